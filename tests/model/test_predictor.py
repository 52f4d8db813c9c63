"""ReferringPredictor: encode once, query many times; results equal a fresh full forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import BackendError
from backend.model import build_model, load_config
from backend.model.device import select_device
from backend.model.transforms import resize_and_pad
from backend.predictor import Prediction, ReferringPredictor


def _image(h: int = 180, w: int = 240) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _count_encoder_calls(model) -> dict[str, int]:
    """Forward hooks on the first layer of each image encoder; returns the live counters."""
    counts = {"clip": 0, "sam": 0}

    def counter(key: str):
        return lambda *_: counts.__setitem__(key, counts[key] + 1)

    model.clip_encoder.model.visual.conv1.register_forward_hook(counter("clip"))
    model.sam_head.image_encoder.register_forward_hook(counter("sam"))
    return counts


def test_encoders_run_once_and_outputs_match_a_full_forward(tiny_name, texts) -> None:
    model = build_model(load_config(tiny_name))
    predictor = ReferringPredictor(model, device="cpu", precision="fp32")  # exact: not auto's bf16 on bf16 CPUs
    counts = _count_encoder_calls(model)
    image = _image()
    predictor.set_image(image)
    first = predictor.predict(texts[0])
    second = predictor.predict(texts[1])
    assert counts == {"clip": 1, "sam": 1}
    assert isinstance(first, Prediction)
    assert first.probs.shape == (1, 180, 240) and first.probs.dtype == np.float32
    assert first.scores.shape == (1,) and first.low_res_logits.shape == (1, 1, 64, 64)
    assert ((first.probs >= 0) & (first.probs <= 1)).all()

    x, _ = resize_and_pad(image, model.config.input_size, model.config.keep_ratio)
    with torch.no_grad():
        for text, pred in zip(texts, (first, second), strict=True):
            fresh = model(x[None], [text]).mask_logits
            torch.testing.assert_close(pred.low_res_logits, fresh, atol=1e-5, rtol=1e-4)


def test_batched_texts_equal_single_texts(tiny_name, texts) -> None:
    predictor = ReferringPredictor(build_model(load_config(tiny_name)), device="cpu")
    predictor.set_image(_image())
    both = predictor.predict(texts + ["a small grey tank"])
    assert both.probs.shape == (3, 180, 240)
    for i, text in enumerate(texts):
        torch.testing.assert_close(both.low_res_logits[i], predictor.predict(text).low_res_logits[0],
                                   atol=1e-5, rtol=1e-4)


def test_lru_cache_by_key() -> None:
    model = build_model(load_config("tiny"))
    predictor = ReferringPredictor(model, device="cpu", cache_size=2)
    counts = _count_encoder_calls(model)
    a, b, c = _image(), _image(100, 100) // 2, _image(120, 90) // 3
    predictor.set_image(a, image_key="a")
    pa = predictor.predict("a red building").probs
    predictor.set_image(b, image_key="b")
    predictor.set_image(a, image_key="a")  # cached: no encoder run
    assert counts["sam"] == 2
    np.testing.assert_allclose(predictor.predict("a red building").probs, pa)
    predictor.set_image(c, image_key="c")  # evicts "b", the least recently used
    predictor.set_image(b, image_key="b")
    assert counts["sam"] == 4
    predictor.set_image(a, image_key="a")  # the cache now holds "c" and "b": "a" is encoded again
    assert counts["sam"] == 5


def test_errors() -> None:
    predictor = ReferringPredictor(build_model(load_config("tiny")), device="cpu")
    assert not predictor.is_image_set and predictor.input_size == 256
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict("a red building")
    predictor.set_image(_image())
    assert predictor.is_image_set
    with pytest.raises(ValueError, match="non-empty"):
        predictor.predict("  ")
    predictor.reset_image()
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict_with_box([0, 0, 10, 10])
    with pytest.raises(ValueError, match="mode"):
        ReferringPredictor(predictor.model, mode="magic")


def test_predict_with_box_and_prior() -> None:
    predictor = ReferringPredictor(build_model(load_config("tiny")), device="cpu")
    predictor.set_image(_image())
    prior = np.zeros((180, 240), np.float32)
    prior[40:100, 60:160] = 1.0
    with_prior = predictor.predict_with_box([60, 40, 160, 100], prior)
    without = predictor.predict_with_box(np.array([60, 40, 160, 100]))
    assert with_prior.probs.shape == (1, 180, 240) and with_prior.scores.shape == (1,)
    assert not np.allclose(with_prior.probs, without.probs)  # the prior reaches SAM's mask input
    with pytest.raises(ValueError, match="mask_prior"):
        predictor.predict_with_box([0, 0, 5, 5], np.zeros((10, 10), np.float32))


def test_zero_shot_runs_end_to_end() -> None:
    model = build_model(load_config("tiny"))
    predictor = ReferringPredictor(model, device="cpu", mode="zero-shot")
    counts = _count_encoder_calls(model)
    predictor.set_image(_image())
    pred = predictor.predict(["a white storage tank", "a red building"])
    assert counts == {"clip": 1, "sam": 1}
    assert pred.probs.shape == (2, 180, 240) and np.isfinite(pred.probs).all()
    assert pred.low_res_logits.shape == (2, 1, 64, 64)


def test_select_device() -> None:
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA") as info:
            select_device("cuda:1")
        assert info.value.code == "device"


def test_prompts_decoded_on_the_same_image_reproduce_predict(tiny_name, texts) -> None:
    """The "prompts" refinement's building blocks: prompts taken off an image and decoded back onto it."""
    # fp32, not auto (bf16 on CPUs with native bf16): the comparison is at float32 rounding.
    predictor = ReferringPredictor(build_model(load_config(tiny_name)), device="cpu", precision="fp32")
    predictor.set_image(_image(256, 256))  # the model's input size: no resampling besides the dense prompt's
    both = texts + ["a small grey tank"]
    prompts = predictor.predict(both, with_prompts=True).prompts
    assert prompts.sparse.shape[0] == 3 and prompts.dense.shape == (3, 256, 256)
    for i, text in enumerate(both):  # grouped by token length, like predict: equal to running each alone
        alone = predictor.predict([text], with_prompts=True).prompts
        torch.testing.assert_close(prompts.sparse[i:i + 1], alone.sparse, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(prompts.dense[i:i + 1], alone.dense, atol=1e-4, rtol=1e-4)
    decoded = predictor.predict_with_prompts(prompts.sparse, prompts.dense)
    direct = predictor.predict(both)
    without_dense = predictor.predict_with_prompts(prompts.sparse, np.zeros_like(prompts.dense))
    # The dense prompt goes D² → image → D² (bilinear both ways), so the masks agree up to that resampling:
    # far closer than without it (demo checkpoint on the sample: 5e-9 vs 0.03 mean difference).
    round_trip = np.abs(decoded.probs - direct.probs).mean()
    assert round_trip < 0.1 * np.abs(without_dense.probs - direct.probs).mean()
    with pytest.raises(ValueError, match="dense_logits"):
        predictor.predict_with_prompts(prompts.sparse, prompts.dense[:, :100])


def test_zero_shot_has_no_prompts() -> None:
    predictor = ReferringPredictor(build_model(load_config("tiny")), device="cpu", mode="zero-shot")
    predictor.set_image(_image())
    with pytest.raises(RuntimeError, match="no prompter"):
        predictor.predict(["a red building"], with_prompts=True)
