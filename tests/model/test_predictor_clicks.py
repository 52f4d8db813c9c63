"""Clicks, a box and a previous answer on top of the phrase: SAM 1 and SAM 2.1 heads, no re-encode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from backend.model import build_model, load_config
from backend.model.checkpoint.io import load_model, save_checkpoint
from backend.model.device import low_precision_keys
from backend.model.ranker.clicks import apply_clicks, click_cells, click_ranks, outside_box
from backend.predictor import ReferringPredictor

PHRASE = "a red building"


def _image(h: int = 180, w: int = 240) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(params=["tiny", "tiny-sam2"])
def predictor(request: pytest.FixtureRequest) -> ReferringPredictor:
    """Both SAM families' tiny configs (random init), the image set."""
    torch.manual_seed(0)
    predictor = ReferringPredictor(build_model(load_config(request.param)), device="cpu")
    predictor.set_image(_image(), image_key="scene")
    return predictor


def test_clicks_decode_on_the_cached_embedding_through_sams_prompt_encoder(predictor) -> None:
    calls = {"n": 0}
    predictor.model.sam_head.image_encoder.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    first = predictor.predict(PHRASE)
    include = predictor.predict(PHRASE, points=[[60.0, 40.0]], point_labels=[1], rank=False)
    moved = predictor.predict(PHRASE, points=[[200.0, 150.0]], point_labels=[1], rank=False)
    boxed = predictor.predict(PHRASE, box=[10.0, 10.0, 120.0, 90.0], mask_input=first.low_res_logits, rank=False)
    assert calls["n"] == 0  # nothing was encoded again
    assert include.probs.shape == (1, 180, 240) and include.low_res_logits.shape == first.low_res_logits.shape
    # The point tokens reach the decoder: another click position gives another mask, as does the box prompt.
    assert not torch.allclose(include.low_res_logits, moved.low_res_logits)
    assert not torch.allclose(boxed.low_res_logits, first.low_res_logits)


def test_an_exclude_click_takes_the_clicked_pixel_out_whatever_came_before(predictor) -> None:
    first = predictor.predict(PHRASE)
    for y, x in ((40, 60), (120, 200), (90, 120)):
        out = predictor.predict(PHRASE, points=[[x + 0.5, y + 0.5]], point_labels=[0],
                                mask_input=first.low_res_logits)
        assert out.probs[0, y, x] < 0.5
        # A later click overrides an earlier one on the same place.
        both = predictor.predict(PHRASE, points=[[x + 0.5, y + 0.5]] * 2, point_labels=[1, 0])
        assert both.probs[0, y, x] < 0.5


def test_bad_clicks_are_refused_with_a_reason(predictor) -> None:
    with pytest.raises(ValueError, match="labels"):
        predictor.predict(PHRASE, points=[[1.0, 2.0]], point_labels=[2])
    with pytest.raises(ValueError, match="box"):
        predictor.predict(PHRASE, box=[10.0, 10.0, 5.0, 20.0])
    with pytest.raises(ValueError, match="mask_input"):
        predictor.predict(PHRASE, mask_input=torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="one non-empty text"):
        predictor.predict([PHRASE, "a tank"], points=[[1.0, 2.0]], point_labels=[1])


def test_click_ranks_make_the_clicked_candidate_the_choice_and_drop_the_excluded_one() -> None:
    candidates = np.zeros((8, 8), np.int64)
    candidates[0:3, 0:3], candidates[5:8, 5:8] = 1, 2
    ranks = torch.tensor([[4.0, -1.0]])
    picked = click_ranks(ranks, candidates, [(6, 6)], [1])
    assert picked.argmax() == 1 and picked[0, 0] <= picked[0, 1] - 25
    dropped = click_ranks(ranks, candidates, [(1, 1)], [0])
    assert dropped.argmax() == 1
    assert click_cells(torch.tensor([[63.9, 0.0], [-5.0, 400.0]]), 64, 8) == [(0, 7), (7, 0)]
    logits = torch.full((1, 1, 8, 8), -5.0)
    logits[0, 0, 0:3, 0:3] = 5.0
    out = apply_clicks(logits, candidates, torch.sigmoid(logits[0, 0]).numpy(), [(1, 1), (6, 6)], [0, 1])
    assert (out[0, 0, 0:3, 0:3] < 0).all() and (out[0, 0, 5:8, 5:8] > 0).all()


def test_an_include_click_the_decoder_lost_keeps_the_previous_answer_and_a_box_clips() -> None:
    # The demo decoder, given a point token, can drop the object clicked on (the sample's red building): the
    # include click then keeps the previous answer's region under it.
    candidates = np.zeros((8, 8), np.int64)
    candidates[5:8, 5:8] = 1
    logits = torch.full((1, 1, 8, 8), -8.0)
    logits[0, 0, 5:8, 5:8] = 5.0
    previous = np.zeros((8, 8), np.float32)
    previous[0:3, 0:3] = 0.9
    out = apply_clicks(logits, candidates, torch.sigmoid(logits[0, 0]).numpy(), [(1, 1)], [1],
                       previous_probs=previous)
    assert (out[0, 0, 0:3, 0:3] > 0).all() and (out[0, 0, 3:5, 3:5] < 0).all()
    boxed = outside_box(torch.full((1, 1, 8, 8), 3.0), torch.tensor([[0.0, 0.0, 32.0, 32.0]]), 64)
    assert (boxed[0, 0, :4, :4] == 3.0).all() and (boxed[0, 0, 4:, :] < 0).all() and (boxed[0, 0, :, 4:] < 0).all()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["tiny", "tiny-sam2"])
def test_clicks_work_on_a_checkpoint_whose_frozen_weights_are_stored_in_bf16(tmp_path, name, precision) -> None:
    """The paper model's converted file stores its frozen base in bf16 (as released): a click reads SAM's random
    Fourier matrix outside any module's forward, which once met a bf16 buffer in an fp32 matmul and failed."""
    torch.manual_seed(0)
    config = dataclasses.replace(load_config(name), frozen_dtype="bfloat16")
    save_checkpoint(build_model(config), tmp_path / "bf16.safetensors", include_base=True)
    model = load_model(tmp_path / "bf16.safetensors")
    low = low_precision_keys(model)
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    assert {dtypes[k] for k in low & set(dtypes) if not k.startswith(("prompter.", "ranker."))} & {torch.bfloat16}
    assert all(dtypes[k] == torch.float32 for k in dtypes if k not in low and dtypes[k].is_floating_point)
    predictor = ReferringPredictor(model, device="cpu", precision=precision)
    predictor.set_image(_image(), image_key="scene")
    first = predictor.predict(PHRASE)
    clicked = predictor.predict(PHRASE, points=[[60.0, 40.0]], point_labels=[0], mask_input=first.next_mask_input)
    assert clicked.probs.shape == (1, 180, 240) and np.isfinite(clicked.probs).all()
    assert clicked.probs[0, 40, 60] < 0.5
