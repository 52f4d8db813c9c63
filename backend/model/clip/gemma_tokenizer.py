"""SigLIP 2's Gemma tokenizer from a local ``tokenizer.json``, through the ``tokenizers`` library.

The authors tokenize with Hugging Face's SigLIP 2 tokenizer (``GemmaTokenizerFast(add_bos_token=False,
add_eos_token=True)``, called with ``padding=True``); this reproduces it without ``transformers``:

* raw, cased text with its punctuation (open_clip's SigLIP wrapper lowercases and strips punctuation: not here);
* EOS appended, no BOS, whatever post-processor ``tokenizer.json`` carries (the special tokens are added here,
  so the file's template cannot add a second EOS or a BOS);
* at most ``context_length`` ids (64, SigLIP 2's position table), the EOS kept last when a text is cut;
* the fixed padding to 64 that SigLIP 2's ``tokenizer.json`` carries is switched off: a batch is padded on the
  right to its longest text with the pad id, and no attention mask is made (the method uses none).

A single query is not padded at all, so its pooled text is the text head applied to its EOS token. (The authors'
batches of 8 pooled shorter texts at a pad position instead; a query alone has no batch to copy, and unpadded
is what a text looks like when it is the longest of its batch. The predictor decodes texts of equal length
together, so a result never depends on which other texts were asked with it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer

from backend.errors import BackendError
from backend.files.bounded_json import loads_bounded

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"  # optional: names the pad and EOS tokens when present
DEFAULT_PAD, DEFAULT_EOS = "<pad>", "<eos>"
FETCH_HINT = ("run `python -m backend weights download siglip2-tokenizer`, or `python -m backend weights import "
              "FOLDER --name siglip2-tokenizer` with a folder holding tokenizer.json from the Hugging Face repo "
              "google/siglip2-so400m-patch16-512")


def tokenizer_folder(name_or_path: str | Path) -> Path:
    """The folder of a tokenizer given as an existing folder path or a weights-registry name.

    Raises:
        BackendError("weights"): the registry has no such tokenizer or its files are not installed.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    from backend.weights.manager import tokenizer_dir  # the weights manager knows where downloads are cached

    return tokenizer_dir(str(name_or_path))


def _special_token(config: dict, key: str, default: str) -> str:
    value = config.get(key) or default
    return value["content"] if isinstance(value, dict) else str(value)


class GemmaTokenizer:
    """Texts → right-padded token ids and their lengths, as the authors' SigLIP 2 tokenizer makes them."""

    def __init__(self, *, folder: str | Path, context_length: int = 64) -> None:
        """Args:
            folder: holds ``tokenizer.json`` (and optionally ``tokenizer_config.json`` naming pad and EOS).
            context_length: the most ids per text, EOS included (the text tower's position table).

        Raises:
            BackendError("weights"): ``tokenizer.json`` is missing, unreadable, or lacks the pad or EOS token.
        """
        folder = Path(folder)
        file = folder / TOKENIZER_FILE
        if not file.is_file():
            raise BackendError("weights", f"the SigLIP 2 tokenizer file {file} is missing", FETCH_HINT)
        try:
            self._tokenizer = Tokenizer.from_file(str(file))
            config_file = folder / CONFIG_FILE
            config = loads_bounded(config_file.read_bytes()) if config_file.is_file() else {}
        except Exception as exc:
            raise BackendError("weights", f"cannot read the tokenizer in {folder}: {exc}", FETCH_HINT) from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.context_length = context_length
        ids = {}
        for key, default in (("pad_token", DEFAULT_PAD), ("eos_token", DEFAULT_EOS)):
            token = _special_token(config, key, default)
            ids[key] = self._tokenizer.token_to_id(token)
            if ids[key] is None:
                raise BackendError("weights", f"{file} has no {key.replace('_', ' ')} {token!r}", FETCH_HINT)
        self.pad_id: int = ids["pad_token"]
        self.eos_id: int = ids["eos_token"]

    def encode(self, text: str) -> list[int]:
        """The ids of one text: its tokens (cut to ``context_length`` − 1), then EOS."""
        tokens = self._tokenizer.encode(text, add_special_tokens=False).ids
        return tokens[:self.context_length - 1] + [self.eos_id]

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: texts: B strings.

        Returns:
            (ids B×L long, right-padded with ``pad_id`` to the longest text L; lengths B long, EOS included).
        """
        encoded = [self.encode(t) for t in texts]
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        ids = torch.full((len(encoded), max(map(len, encoded), default=1)), self.pad_id, dtype=torch.long)
        for row, e in zip(ids, encoded, strict=True):
            row[:len(e)] = torch.tensor(e)
        return ids, lengths
