"""Shapes and dtypes through every part of both architectures, with a batch of mixed-length texts."""

from __future__ import annotations

import torch

from backend.model import ImageEmbeddings, RefSegOutput, build_model, load_config
from backend.model.prompter.v1 import TextFilterPrompter
from backend.model.prompter.v2 import CascadedPrompter


def test_clip_encoder_shapes(tiny_model, images, texts) -> None:
    clip = tiny_model.clip_encoder
    dense = clip.encode_image_dense(images)
    assert dense.shape == (2, clip.embed_dim, 8, 8) and dense.dtype == torch.float32
    tokens, pooled, pad = clip.encode_text(texts)
    lengths = (~pad).sum(dim=1)
    assert tokens.shape == (2, int(lengths.max()), clip.embed_dim)
    assert pooled.shape == (2, clip.embed_dim) and pad.dtype == torch.bool
    assert lengths[0] < lengths[1] and not pad[1].any() and pad[0, -1]


def test_text_trimming_does_not_change_causal_features(tiny_model, texts) -> None:
    # CLIP's text tower is causal: a short text's features are the same alone or padded in a batch.
    clip = tiny_model.clip_encoder
    alone_tokens, alone_pooled, _ = clip.encode_text(texts[:1])
    batch_tokens, batch_pooled, _ = clip.encode_text(texts)
    n = alone_tokens.shape[1]
    torch.testing.assert_close(batch_tokens[0, :n], alone_tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch_pooled[0], alone_pooled[0], atol=1e-5, rtol=1e-5)


def test_sam_head_shapes(tiny_model, images) -> None:
    sam = tiny_model.sam_head
    emb = sam.encode_image(images)
    assert emb.shape == (2, 32, 16, 16)
    sparse = torch.randn(2, 5, 32)
    logits, iou = sam.decode(emb, sparse, torch.randn(2, 1, 64, 64))
    assert logits.shape == (2, 1, 64, 64) and iou.shape == (2,)
    # One image shared by three prompts, and SAM's own box/point prompts.
    logits, iou = sam.decode(emb[:1], torch.randn(3, 5, 32), torch.randn(3, 1, 64, 64))
    assert logits.shape == (3, 1, 64, 64)
    box = torch.tensor([[10.0, 20.0, 100.0, 120.0]])
    logits, iou = sam.decode_with_box(emb[:1], box, torch.tensor([[50.0, 60.0]]), None)
    assert logits.shape == (1, 1, 64, 64) and iou.shape == (1,)


def test_prompters_shapes(tiny_model, images, texts) -> None:
    clip = tiny_model.clip_encoder
    dense = clip.encode_image_dense(images)
    tokens, pooled, _ = clip.encode_text(texts)
    if isinstance(tiny_model.prompter, CascadedPrompter):
        out = tiny_model.prompter(dense, tokens, pooled, clip.logit_scale, clip.logit_bias)
        assert out.sparse.shape == (2, 9, 32)
        assert out.q1.shape == out.q2.shape == (2, 3, clip.embed_dim)
    else:
        assert isinstance(tiny_model.prompter, TextFilterPrompter)
        out = tiny_model.prompter(dense, tokens, pooled, clip.logit_scale, clip.logit_bias,
                                  tiny_model.sam_head.dense_pe(8))
        assert out.sparse.shape == (2, 4, 32)  # 8 → 4 → 2: 2² tokens
        assert out.q1 is None
    assert out.dense.shape == (2, 1, 64, 64) and torch.isfinite(out.dense).all()


def test_v1_token_count_follows_the_grid() -> None:
    prompter = TextFilterPrompter(dim=16, hidden_dim=8, prompt_dim=8, mask_size=16)
    out = prompter(torch.randn(1, 16, 27, 27), torch.randn(1, 4, 16), torch.randn(1, 16),
                   torch.tensor(1.0), torch.tensor(0.0), torch.randn(8, 27, 27))
    assert out.sparse.shape == (1, 49, 8)  # the method's 27² grid gives 7×7 = 49 tokens


def test_full_forward(tiny_model, images, texts) -> None:
    out = tiny_model(images, texts)
    assert isinstance(out, RefSegOutput)
    assert out.mask_logits.shape == (2, 1, 64, 64) and out.mask_logits.dtype == torch.float32
    assert out.scores.shape == (2,) and ((out.scores >= 0) & (out.scores <= 1)).all()
    assert out.clip_patch.shape == (2, 32, 8, 8)
    if tiny_model.config.arch == "rsrefseg2":
        assert out.q1.shape == (2, 3, 32)
    else:
        assert out.q1 is None and out.q2 is None


def test_forward_is_decode_of_encode(tiny_model, images, texts) -> None:
    tiny_model.eval()
    with torch.no_grad():
        full = tiny_model(images, texts)
        emb = tiny_model.encode_images(images)
        assert isinstance(emb, ImageEmbeddings)
        split = tiny_model.decode(emb, texts)
        # One image, several texts: embeddings with batch 1 are shared.
        shared = tiny_model.decode(ImageEmbeddings(clip=emb.clip[:1], sam=emb.sam[:1]), texts)
        # texts[1] is the longest, so it has no padding in the batch: alone it must decode identically.
        single = tiny_model.decode(ImageEmbeddings(clip=emb.clip[:1], sam=emb.sam[:1]), texts[1:])
    torch.testing.assert_close(full.mask_logits, split.mask_logits)
    assert shared.mask_logits.shape == (2, 1, 64, 64)
    torch.testing.assert_close(shared.mask_logits[1], single.mask_logits[0], atol=1e-5, rtol=1e-4)


def test_texts_change_the_mask(images) -> None:
    model = build_model(load_config("tiny")).eval()
    with torch.no_grad():
        a = model(images[:1], ["a red building"]).mask_logits
        b = model(images[:1], ["the round grey tank"]).mask_logits
    assert not torch.allclose(a, b)
