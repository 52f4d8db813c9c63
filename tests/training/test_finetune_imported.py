"""Fine-tuning from an imported checkpoint (issue 13): a tiny file in the authors' layout is converted into the
imported checkpoint ``rsrefseg2-rrsisd`` in a temporary weights folder, then ``init_from: rsrefseg2-rrsisd`` trains
it a few steps on synthetic records; the result saves, reloads strictly and evaluates."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from authors_layout import authors_state  # noqa: E402 (the model tests' helper)
from authors_layout import tiny_config as authors_tiny_config  # noqa: E402

from backend.model.authors import import_authors  # noqa: E402
from backend.model.authors.location import imported_checkpoint  # noqa: E402
from backend.model.checkpoint.io import CheckpointMeta, load_model  # noqa: E402
from backend.model.config import config_from_dict  # noqa: E402
from training.config import ScheduleConfig, load_train_config  # noqa: E402
from training.evaluate import main as evaluate_main  # noqa: E402
from training.init_from import fold_lora  # noqa: E402
from training.synthetic import write_split  # noqa: E402
from training.train import build_train_module, train  # noqa: E402

NAME = "rsrefseg2-rrsisd"
BPE_VOCAB = 49408  # open_clip's default tokenizer, which a tiny config without tokenizer files uses
TOKEN_EMBEDDING = "clip_text_encoder.base_model.model.model.embeddings.token_embedding.weight"


@pytest.fixture
def imported(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(the imported checkpoint in a temporary weights folder, its model config JSON)."""
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path / "weights"))
    data = authors_tiny_config().to_dict()
    data["clip"]["model_cfg"]["text_cfg"]["vocab_size"] = BPE_VOCAB  # training feeds phrases through the tokenizer
    config = config_from_dict(data)
    state = authors_state(authors_tiny_config())
    width = state[TOKEN_EMBEDDING].shape[1]
    generator = torch.Generator().manual_seed(2)
    state[TOKEN_EMBEDDING] = (0.3 * torch.randn(BPE_VOCAB, width, generator=generator)).bfloat16()
    torch.save({"state_dict": state}, tmp_path / "rrsisd.pth")
    (tmp_path / "model.json").write_text(json.dumps(config.to_dict()), encoding="utf-8")
    dest = import_authors(tmp_path / "rrsisd.pth", imported_checkpoint(NAME), config=config)
    return dest, tmp_path / "model.json"


def _forward(model: torch.nn.Module) -> torch.Tensor:
    """The mask logits (B×1×D×D) of one fixed image and phrase."""
    size = model.config.input_size
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(images, ["the red building"]).mask_logits


def test_fine_tuning_an_imported_checkpoint_learns_saves_reloads_and_evaluates(imported, tmp_path) -> None:
    dest, model_json = imported
    write_split(tmp_path / "data", "train", 2, 128, seed=1)
    write_split(tmp_path / "data", "val", 2, 128, seed=1)
    schedule = ScheduleConfig(warmup_epochs=0, cosine_begin_epoch=4, cosine_end_epoch=4, cosine_t_max_epochs=4)
    cfg = tiny_config(tmp_path / "data", tmp_path / "run", model=str(model_json), init_from=NAME, batch_size=2,
                      epochs=4, lr=1e-3, checkpoint_every=0, schedule=schedule, train_base=False)

    start = build_train_module(cfg).model
    # It starts as the authors' model: their adapters folded in fp32 against the import's unmerged ones (fp32
    # rounding only, relative to logits of a few hundred).
    authors = _forward(load_model(dest))
    torch.testing.assert_close(_forward(start), authors, rtol=1e-4, atol=1e-5 * float(authors.abs().max()))
    frozen = {n for n, p in start.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in start.named_parameters() if p.requires_grad}
    assert any(n.startswith("prompter.") for n in trainable) and any(n.endswith("lora_b") for n in trainable)
    assert any(".base." in n for n in frozen) and trainable == set(start.trainable_parameter_names())

    result = train(cfg)
    assert len(result.losses) == 4 and result.losses[-1] < result.losses[0]
    reloaded = load_model(result.checkpoint)  # strict: include_base, every key
    trained = result.module.model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, trained[name], msg=name)
    assert any(reloaded.state_dict()[n].abs().sum() > 0 for n in trainable if n.endswith("lora_b"))

    out = tmp_path / "eval.json"
    evaluate_main(["--checkpoint", str(result.checkpoint), "--data", str(tmp_path / "data"), "--split", "val",
                   "--device", "cpu", "--out", str(out)])
    assert json.loads(out.read_text())["model"]["n"] == 2


def test_folding_trained_adapters_keeps_the_outputs_and_restarts_them(imported) -> None:
    dest, _ = imported
    model = load_model(dest)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("lora_b"):
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    before = _forward(model)
    assert fold_lora(model) > 0
    assert all(not p.any() for n, p in model.named_parameters() if n.endswith("lora_b"))
    # Mask logits reach a few hundred in this random model: compare at fp32 precision relative to that scale.
    torch.testing.assert_close(_forward(model), before, rtol=1e-4, atol=1e-5 * float(before.abs().max()))


def test_a_mismatched_config_or_a_checkpoint_without_its_bases_is_refused(imported, tmp_path) -> None:
    _, model_json = imported
    cfg = tiny_config(tmp_path / "data", tmp_path / "run", model="tiny", init_from=NAME)
    with pytest.raises(ValueError, match="another model config"):
        build_train_module(cfg)
    with pytest.raises(ValueError, match="include_base: true"):
        build_train_module(replace(cfg, model=str(model_json), include_base=False))


def test_the_shipped_fine_tuning_config_names_the_imported_checkpoint() -> None:
    cfg = load_train_config(Path(__file__).resolve().parents[2] / "configs" / "finetune-rrsisd.yaml")
    assert (cfg.model, cfg.init_from, cfg.include_base, cfg.train_base) == ("rsrefseg2-paper", NAME, True, False)
    assert CheckpointMeta.from_dict(cfg.meta).gsd_range_m is not None
