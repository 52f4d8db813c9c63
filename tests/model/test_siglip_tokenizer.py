"""SigLIP 2's Gemma tokenizer as the authors call it, from a local tokenizer.json (tiny_gemma builds one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_gemma import write_gemma_like_tokenizer
from tokenizers import Tokenizer

from backend.errors import BackendError
from backend.model.clip.gemma_tokenizer import GemmaTokenizer, tokenizer_folder

TEXT = "The Red building, at the TOP left!"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gemma_like_tokenizer(tmp_path_factory.mktemp("gemma"))


@pytest.fixture(scope="module")
def raw(folder: Path) -> Tokenizer:
    """The file as the tokenizers library reads it, fixed padding and all."""
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def test_ids_keep_case_and_punctuation_end_with_eos_without_bos_or_fixed_padding(folder, raw) -> None:
    tokenizer = GemmaTokenizer(folder=folder)
    ids = tokenizer.encode(TEXT)
    assert ids[-1] == tokenizer.eos_id == raw.token_to_id("<eos>")
    assert raw.token_to_id("<bos>") not in ids
    assert raw.decode(ids[:-1]) == TEXT  # raw text back: case, commas and "!" kept, nothing canonicalised
    assert ids != tokenizer.encode(TEXT.lower())
    assert len(raw.encode(TEXT).ids) == 64  # the file pads every text to 64 ...
    assert len(ids) < 64 and tokenizer.pad_id not in ids  # ... the tokenizer does not
    assert ids[:-1] == raw.encode(TEXT, add_special_tokens=False).ids[:len(ids) - 1]


def test_long_texts_are_capped_with_the_eos_kept(folder) -> None:
    tokenizer = GemmaTokenizer(folder=folder)
    ids = tokenizer.encode(" ".join([TEXT] * 20))
    assert len(ids) == 64 and ids[-1] == tokenizer.eos_id
    assert len(GemmaTokenizer(folder=folder, context_length=8).encode(TEXT)) == 8


def test_a_template_with_bos_does_not_change_the_ids(tmp_path, folder) -> None:
    other = write_gemma_like_tokenizer(tmp_path / "bos", template="<bos> $A <eos>")
    assert GemmaTokenizer(folder=other).encode(TEXT) == GemmaTokenizer(folder=folder).encode(TEXT)


def test_batch_is_padded_to_its_longest_text_with_the_pad_id(folder) -> None:
    tokenizer = GemmaTokenizer(folder=folder)
    assert tokenizer.pad_id != 0  # the padding below cannot be confused with token 0
    short, long = "A pond", TEXT
    ids, lengths = tokenizer([short, long])
    n_short, n_long = len(tokenizer.encode(short)), len(tokenizer.encode(long))
    assert ids.shape == (2, n_long) and lengths.tolist() == [n_short, n_long]
    assert ids[0, n_short:].eq(tokenizer.pad_id).all() and ids[0, n_short - 1] == tokenizer.eos_id
    single, single_len = tokenizer([short])  # a query alone is not padded
    assert single.shape == (1, n_short) and single_len.tolist() == [n_short]


def test_special_tokens_default_to_gemmas_names_without_tokenizer_config(tmp_path, folder) -> None:
    bare = write_gemma_like_tokenizer(tmp_path / "bare", with_config=False)
    assert GemmaTokenizer(folder=bare).encode(TEXT) == GemmaTokenizer(folder=folder).encode(TEXT)
    (bare / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}), encoding="utf-8")
    with pytest.raises(BackendError, match="eos token '</s>'"):
        GemmaTokenizer(folder=bare)


def test_a_missing_file_names_it_and_the_fetch_command(tmp_path) -> None:
    with pytest.raises(BackendError) as info:
        GemmaTokenizer(folder=tmp_path)
    assert str(tmp_path / "tokenizer.json") in info.value.message
    assert "weights download siglip2-tokenizer" in info.value.hint


def test_an_explicit_folder_is_used_as_is(folder) -> None:
    assert tokenizer_folder(str(folder)) == folder


def test_ids_are_long_tensors(folder) -> None:
    ids, lengths = GemmaTokenizer(folder=folder)(["a", "b c"])
    assert ids.dtype == lengths.dtype == torch.long


def test_a_registry_name_is_looked_up_in_the_weights_folder(tmp_path, monkeypatch, raw) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(BackendError) as info:
        tokenizer_folder("siglip2-tokenizer")
    assert "tokenizer.json" in info.value.message and "weights download siglip2-tokenizer" in info.value.hint
    folder = write_gemma_like_tokenizer(tmp_path / "siglip2-tokenizer")
    assert tokenizer_folder("siglip2-tokenizer") == folder
    assert GemmaTokenizer(folder=tokenizer_folder("siglip2-tokenizer")).encode(TEXT)[-1] == raw.token_to_id("<eos>")


@pytest.mark.parametrize(("text", "words"), [("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
                                             ('{"eos_token": ' + "9" * 5000 + "}", "an integer of 5000 digits")],
                         ids=["nested", "huge-integer"])
def test_a_hostile_tokenizer_config_is_a_weights_error(tmp_path, text, words) -> None:
    """Second hostile sweep: a RecursionError or Python's int-size advice used to be the message."""
    bare = write_gemma_like_tokenizer(tmp_path / "bare", with_config=False)
    (bare / "tokenizer_config.json").write_text(text, encoding="utf-8")
    with pytest.raises(BackendError) as info:
        GemmaTokenizer(folder=bare)
    assert info.value.code == "weights" and words in info.value.message and "recursion" not in info.value.message
    assert "set_int_max_str_digits" not in info.value.message
