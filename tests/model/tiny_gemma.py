"""A small ``tokenizer.json`` laid out like SigLIP 2's Gemma tokenizer, built with the ``tokenizers`` library.

Like the real file: a BPE model over raw text (spaces become "▁", no lowercasing, no pre-tokenizer), the special
tokens ``<pad>``, ``<eos>``, ``<bos>``, ``<unk>``, a post-processor that appends ``<eos>`` and a baked-in fixed
padding to 64 plus truncation. Unlike the real file (pad 0, eos 1), ``<unk>`` comes first, so the pad id is not 0.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

SPECIAL = ["<unk>", "<pad>", "<eos>", "<bos>"]
CORPUS = [
    "The red building at the top left.", "the large white storage tank near the river",
    "A Ship, closest to the top edge!", "two ponds; one field? The ROAD at the TOP.", "Storage tanks and a small pond",
]


def write_gemma_like_tokenizer(folder: Path, *, with_config: bool = True, template: str = "$A <eos>") -> Path:
    """Write ``tokenizer.json`` (and ``tokenizer_config.json`` if asked) into ``folder``; returns the folder.

    Args:
        folder: where to write (created).
        with_config: also write ``tokenizer_config.json`` naming the pad and EOS tokens, as the hub repo has.
        template: the file's single-sequence post-processor template.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Replace("▁", " ")
    tokenizer.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=200, special_tokens=SPECIAL,
                                                                   show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("<eos>", "<bos>")])
    tokenizer.enable_padding(length=64, pad_id=tokenizer.token_to_id("<pad>"), pad_token="<pad>")
    tokenizer.enable_truncation(max_length=64)
    tokenizer.save(str(folder / "tokenizer.json"))
    if with_config:
        config = {"pad_token": "<pad>", "eos_token": {"content": "<eos>", "special": True}, "bos_token": "<bos>",
                  "add_bos_token": False, "add_eos_token": True}
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
