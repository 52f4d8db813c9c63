"""The authors' checkpoint importer refuses what it cannot map exactly, naming the keys, and never runs a pickle."""

from __future__ import annotations

import pytest
import torch
from authors_layout import authors_state, tiny_config

from backend.errors import BackendError
from backend.model.authors import import_authors
from backend.model.config import config_from_dict

VISION = "clip_vision_encoder.base_model.model.model."


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture
def state(config):
    return authors_state(config)


def _refused(tmp_path, config, data) -> BackendError:
    torch.save(data, tmp_path / "bad.pth")
    dest = tmp_path / "out.safetensors"
    with pytest.raises(BackendError) as info:
        import_authors(tmp_path / "bad.pth", dest, config=config)
    assert info.value.code == "weights"
    assert not dest.exists() and not dest.with_suffix(".json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pth"]  # no temporary file left either
    return info.value


def test_a_missing_key_is_named(tmp_path, config, state) -> None:
    del state["prompter.prompt_pe_embedding"]
    error = _refused(tmp_path, config, {"state_dict": state})
    assert "missing keys" in error.message and "prompter.prompt_pe" in error.message


def test_a_missing_lora_matrix_is_named(tmp_path, config, state) -> None:
    del state[f"{VISION}encoder.layers.1.self_attn.k_proj.lora_B.default.weight"]
    error = _refused(tmp_path, config, {"state_dict": state})
    assert "vision:encoder.layers.1.self_attn.k_proj" in error.message


def test_an_extra_key_is_named(tmp_path, config, state) -> None:
    state["prompter.text_query_embedding1"] = torch.zeros(3, 32, dtype=torch.bfloat16)
    state["backbone.model.extra_head.weight"] = torch.zeros(2)
    error = _refused(tmp_path, config, {"state_dict": state})
    assert "prompter:text_query_embedding1" in error.message and "sam:extra_head.weight" in error.message


def test_lora_where_the_authors_have_none_is_refused(tmp_path, config, state) -> None:
    fc1 = f"{VISION}encoder.layers.0.mlp.fc1"
    state[f"{fc1}.base_layer.weight"] = state.pop(f"{fc1}.weight")
    state[f"{fc1}.lora_A.default.weight"] = torch.zeros(4, 32)
    state[f"{fc1}.lora_B.default.weight"] = torch.zeros(64, 4)
    error = _refused(tmp_path, config, {"state_dict": state})
    assert "vision:encoder.layers.0.mlp.fc1" in error.message


def test_a_wrong_shape_is_named(tmp_path, config, state) -> None:
    state["prompter.img_pe"] = torch.zeros(1, 32, 5, 5, dtype=torch.bfloat16)
    error = _refused(tmp_path, config, {"state_dict": state})
    assert "wrong shapes" in error.message and "img_pe (1, 32, 5, 5) != (1, 32, 4, 4)" in error.message


def test_no_state_dict_is_refused(tmp_path, config, state) -> None:
    error = _refused(tmp_path, config, {"model": state})
    assert "no 'state_dict'" in error.message


class _Payload:
    """Unpickling this would create a file: it must never happen."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path, config, state) -> None:
    marker = tmp_path.parent / f"{tmp_path.name}-payload-ran"
    error = _refused(tmp_path, config, {"state_dict": state, "hook": _Payload(marker)})
    assert "refused without running" in error.message and "weights_only" not in error.message + error.hint
    assert not marker.exists()


def test_a_file_that_is_not_pytorch_is_refused(tmp_path, config) -> None:
    (tmp_path / "bad.pth").write_text("<html>proxy login</html>")
    with pytest.raises(BackendError, match="not a PyTorch file"):
        import_authors(tmp_path / "bad.pth", tmp_path / "out.safetensors", config=config)


def test_a_config_whose_lora_scale_is_not_the_authors_is_refused(tmp_path) -> None:
    data = tiny_config().to_dict()
    data["sam"]["lora"]["alpha"] = 2 * data["sam"]["lora"]["rank"]
    config = config_from_dict(data)
    with pytest.raises(BackendError, match="scale") as caught:
        import_authors(tmp_path / "never-read.pth", tmp_path / "out.safetensors", config=config)
    assert "rsrefseg2-paper" in caught.value.hint and not (tmp_path / "out.safetensors").exists()


def test_a_mis_shaped_logit_scale_is_a_weights_error_naming_the_key_and_both_shapes(tmp_path, config, state) -> None:
    """[2] where one number belongs used to escape the recipe as a RuntimeError ("this is a bug")."""
    state["clip_text_encoder.base_model.model.logit_scale"] = torch.zeros(2)
    error = _refused(tmp_path, config, {"state_dict": state})
    assert "wrong shapes" in error.message
    assert "clip_text_encoder.base_model.model.logit_scale (2,)" in error.message and "needed ()" in error.message


@pytest.mark.parametrize("matrix", ["lora_A", "lora_B"])
def test_a_lora_pair_of_unequal_ranks_is_a_weights_error_naming_both_shapes(tmp_path, config, state, matrix) -> None:
    site = f"{VISION}encoder.layers.1.self_attn.k_proj"
    key = f"{site}.{matrix}.default.weight"
    rows, columns = state[key].shape
    state[key] = torch.zeros((2, columns) if matrix == "lora_A" else (rows, 2))
    a, b = (tuple(state[f"{site}.lora_{m}.default.weight"].shape) for m in "AB")
    error = _refused(tmp_path, config, {"state_dict": state})
    assert "LoRA pairs of unequal ranks" in error.message
    assert f"vision:encoder.layers.1.self_attn.k_proj lora_A {a}, lora_B {b}" in error.message
