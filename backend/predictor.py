"""``ReferringPredictor``: segment_anything's ``SamPredictor`` pattern for referring expressions.

``set_image`` runs both image encoders once and caches the embeddings (an LRU keyed by ``image_key``);
``predict(text)`` then costs only the text encoder, the prompter and SAM's mask decoder.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.model.architectures.base import ReferringSegmenter
from backend.model.architectures.zero_shot import encode_images_zero_shot, zero_shot_prompts
from backend.model.checkpoint.io import CheckpointMeta
from backend.model.config import RankerConfig
from backend.model.device import autocast, choose_precision, select_device
from backend.model.outputs import ImageEmbeddings, RefSegOutput, mask_scores
from backend.model.ranker.clicks import apply_clicks, click_cells, click_ranks, outside_box
from backend.model.ranker.features import Candidates, candidate_features, label_components
from backend.model.ranker.ranker import rerank_logits
from backend.model.ranker.relation_anchor import relation_anchor, relation_subject
from backend.model.transforms import resize_and_pad, unpad_and_resize

MODES = ("trained", "zero-shot")


@dataclass
class PhrasePrompts:
    """The prompter's SAM prompts for N texts on one image.

    Attributes:
        sparse: N×P×Cp prompt tokens (CPU).
        dense: N×H×W float32 dense prompt logits at image resolution.
    """

    sparse: torch.Tensor
    dense: np.ndarray


@dataclass
class Prediction:
    """Masks for N queries on the current image.

    Attributes:
        probs: N×H×W float32 foreground probabilities at image resolution.
        scores: N float32 confidences (mean probability inside each mask).
        low_res_logits: N×1×D×D float32 logits in the model-input frame (CPU).
        prompts: the prompter's prompts, when asked for (``predict(..., with_prompts=True)``).
        decoded_logits: with clicks, N×1×D×D the mask decoder's own logits before the ranker and the clicks
            acted on them (CPU); None otherwise.
    """

    probs: np.ndarray
    scores: np.ndarray
    low_res_logits: torch.Tensor
    prompts: PhrasePrompts | None = None
    decoded_logits: torch.Tensor | None = None

    @property
    def next_mask_input(self) -> torch.Tensor:
        """What the next click's ``mask_input`` is (SAM's loop feeds back the decoder's logits, the clicks are
        passed again): ``decoded_logits`` after a click, the answer's logits after the phrase alone."""
        return self.low_res_logits if self.decoded_logits is None else self.decoded_logits


@dataclass
class _ImageState:
    embeddings: ImageEmbeddings
    valid_hw: tuple[int, int]
    image_hw: tuple[int, int]


class ReferringPredictor:
    """Cached-embedding predictor over a ``build_model``/``load_model`` model."""

    def __init__(self, model: ReferringSegmenter, *, device: str | torch.device | None = None,
                 cache_size: int = 4, mode: str = "trained", precision: str = "auto") -> None:
        """Args:
            model: an RSRefSeg 2 / RSRefSeg model.
            device: ``select_device`` spec (None: "auto", i.e. CUDA, then MPS, then CPU).
            precision: compute precision, "auto", "fp32" or "bf16" (``device.choose_precision``); the chosen one
                and the reason are kept as ``precision`` and ``precision_reason``.
            cache_size: how many images' embeddings to keep (LRU over ``image_key``).
            mode: "trained" (the prompter) or "zero-shot" (ClearCLIP similarity → SAM box/point prompts).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.device = select_device(device or "auto")
        self.model = model.to(self.device).eval()
        self.precision, self.precision_reason = choose_precision(self.device, precision)
        self.meta: CheckpointMeta = getattr(model, "meta", None) or CheckpointMeta()
        self.mode = mode
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, _ImageState] = OrderedDict()
        self._state: _ImageState | None = None
        self._token_limit: int | None = None  # tokens the text encoder reads (``phrase_warnings``)

    @property
    def input_size(self) -> int:
        """Side S of the square model input."""
        return self.model.config.input_size

    def _token_counts(self, texts: list[str]) -> list[int]:
        """Tokens (special tokens included) the text encoder reads of each text, capped at its context."""
        _, pad = self.model.clip_encoder.tokenize(texts)
        return (~pad).sum(dim=1).tolist()

    def phrase_warnings(self, phrases: Sequence[str]) -> list[str]:
        """One warning per phrase longer than the text encoder's context, naming the words it keeps.

        The tokenizer silently cuts a long phrase; the words after the cut then change nothing. A word's tokens
        do not depend on its neighbours (CLIP's BPE and SentencePiece both split at spaces first), so each
        word's cost is counted alone and the kept words are those whose costs still fit.

        Returns:
            Messages such as 'phrase 2 is longer than the model reads (32 tokens): it uses "the large …" and
            ignores "next to …"'; empty when every phrase fits.
        """
        phrases = list(phrases)
        if self._token_limit is None:  # a text far beyond any context: its count is the cap itself
            self._token_limit = self._token_counts(["a " * 4096])[0]
        limit = self._token_limit
        warnings = []
        for index, (phrase, count) in enumerate(zip(phrases, self._token_counts(phrases), strict=True)):
            words = phrase.split()
            if count < limit or not words:
                continue
            specials, *costs = self._token_counts(["", *words[:limit]])  # a word costs >= 1 token
            costs = [c - specials for c in costs]
            used, kept = specials, 0
            while kept < len(costs) and used + costs[kept] <= limit:
                used += costs[kept]
                kept += 1
            if kept == len(words):
                continue  # fills the context exactly
            dropped = words[kept:]
            ignored = " ".join(dropped[:6]) + (" …" if len(dropped) > 6 else "")
            warnings.append(f"phrase {index + 1} is longer than the model reads ({limit} tokens): it uses "
                            f"\"{' '.join(words[:kept])}\" and ignores \"{ignored}\"")
        return warnings

    @property
    def is_image_set(self) -> bool:
        return self._state is not None

    def has_image(self, image_key: Hashable) -> bool:
        """Whether ``image_key``'s embeddings are cached (``set_image`` with that key would not encode)."""
        return image_key in self._cache

    @torch.inference_mode()
    def set_image(self, image: np.ndarray, image_key: Hashable | None = None) -> None:
        """Encode ``image`` (H×W×3 RGB, uint8 or float in [0, 1]) unless ``image_key`` is already cached."""
        if image_key is not None and image_key in self._cache:
            self._cache.move_to_end(image_key)
            self._state = self._cache[image_key]
            return
        cfg = self.model.config
        tensor, valid = resize_and_pad(image, cfg.input_size, cfg.keep_ratio)
        batch = tensor[None].to(self.device)
        with autocast(self.device, self.precision):
            if self.mode == "zero-shot":
                embeddings = encode_images_zero_shot(self.model, batch)
            else:
                embeddings = self.model.encode_images(batch)
        self._state = _ImageState(embeddings, valid, (int(image.shape[0]), int(image.shape[1])))
        if image_key is not None:
            self._cache[image_key] = self._state
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def reset_image(self) -> None:
        """Forget the current image and the cache."""
        self._state = None
        self._cache.clear()

    def _require_image(self) -> _ImageState:
        if self._state is None:
            raise RuntimeError("no image is set: call set_image(image) before predicting")
        return self._state

    def _decode_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, list[RefSegOutput] | None]:
        """Run the text encoder, prompter and mask decoder for each text on the current image (``_per_text``).

        Returns:
            (logits N×1×D×D float32, the model's per-text outputs, or None in zero-shot mode).
        """
        state = self._require_image()
        texts = list(texts)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("predict needs one or more non-empty text queries")
        with autocast(self.device, self.precision):
            if self.mode == "zero-shot":
                return self._zero_shot(state, texts).float(), None
            outs = self._per_text(texts, lambda group: self.model.decode(state.embeddings, group))
        return torch.cat([out.mask_logits for out in outs]).float(), outs

    def _per_text(self, texts: list[str], run: Callable[[list[str]], Any]) -> list[Any]:
        """``run`` on groups of texts of equal token length; returns one batch-1 slice of its output per text.

        The method's prompter has no key-padding mask, so grouping keeps every text's result identical to running
        it alone. ``run`` returns a dataclass of batch-first tensors (or None fields).
        """
        _, pad = self.model.clip_encoder.tokenize(texts)
        lengths = (~pad).sum(dim=1).tolist()
        results: list[Any] = [None] * len(texts)
        for length in sorted(set(lengths)):
            group = [i for i, n in enumerate(lengths) if n == length]
            out = run([texts[i] for i in group])
            for j, i in enumerate(group):
                results[i] = type(out)(**{f.name: None if (v := getattr(out, f.name)) is None else v[j:j + 1]
                                          for f in fields(out)})
        return results

    @torch.inference_mode()
    def predict_with_prompts(self, sparse: torch.Tensor, dense_logits: np.ndarray) -> Prediction:
        """Decode the current image with prompts taken from another image of the same scene.

        Args:
            sparse: N×P×Cp prompt tokens (``PhrasePrompts.sparse``).
            dense_logits: N×H×W dense prompt logits at this image's resolution (e.g. resampled from
                ``PhrasePrompts.dense`` onto this image's footprint).

        Returns:
            A ``Prediction`` with one mask per prompt.
        """
        state = self._require_image()
        if dense_logits.shape[1:] != state.image_hw or dense_logits.shape[0] != sparse.shape[0]:
            raise ValueError(f"dense_logits must be {sparse.shape[0]}×{state.image_hw}, got {dense_logits.shape}")
        dense_logits = np.asarray(dense_logits, np.float32)
        dense = self._to_input_frame(state, torch.as_tensor(dense_logits, device=self.device),
                                     pad_value=float(dense_logits.min()))
        with autocast(self.device, self.precision):
            logits, _ = self.model.sam_head.decode(state.embeddings.sam, sparse.to(self.device), dense)
        logits = logits.float()
        return self._to_prediction(state, logits, mask_scores(logits))

    def _zero_shot(self, state: _ImageState, texts: list[str]) -> torch.Tensor:
        _, pooled, _ = self.model.clip_encoder.encode_text(texts)
        boxes, points = zero_shot_prompts(state.embeddings.clip, pooled, state.valid_hw, self.input_size)
        logits, _ = self.model.sam_head.decode_with_box(state.embeddings.sam, boxes, points, None)
        return logits

    def _to_prediction(self, state: _ImageState, logits: torch.Tensor, scores: torch.Tensor) -> Prediction:
        full = unpad_and_resize(logits, state.valid_hw, state.image_hw, self.input_size)
        probs = torch.sigmoid(full[:, 0]).cpu().numpy().astype(np.float32)
        return Prediction(probs=probs, scores=scores.cpu().numpy().astype(np.float32), low_res_logits=logits.cpu())

    @torch.inference_mode()
    def predict_low_res(self, texts: Sequence[str]) -> torch.Tensor:
        """The mask decoder's own low-resolution logits (N×1×D×D, model-input frame), before any ranking."""
        return self._decode_texts(texts)[0]

    def to_input_frame(self, maps: np.ndarray) -> torch.Tensor:
        """N×H×W maps at the current image's resolution → N×1×D×D in the model-input frame (bilinear)."""
        state = self._require_image()
        return self._to_input_frame(state, torch.as_tensor(np.asarray(maps, np.float32), device=self.device))

    def candidates(self, logits: torch.Tensor, cfg: RankerConfig, anchors: list[torch.Tensor | None] | None = None,
                   subjects: list[torch.Tensor | None] | None = None) -> Candidates:
        """The candidates ``cfg`` defines in N×1×D×D ``logits`` of the current image (``candidate_features``).

        Args:
            anchors: per text, its anchor's D×D probabilities (``anchor_probs``), read when ``cfg.relations``.
            subjects: per text, its subject's D×D probabilities (``subject_probs``), read when ``cfg.subjects``.
        """
        state = self._require_image()
        size = self.input_size
        return candidate_features(logits, (state.valid_hw[0] / size, state.valid_hw[1] / size),
                                  threshold=cfg.threshold, max_candidates=cfg.max_candidates,
                                  close_gaps=cfg.close_gaps,
                                  relations=cfg.relations, anchors=anchors, subjects=cfg.subjects,
                                  subject_probs=subjects)

    def phrase_candidates(self, texts: list[str], logits: torch.Tensor, cfg: RankerConfig) -> Candidates:
        """The candidates of N texts' N×1×D×D ``logits``, with the anchors and subjects ``cfg`` reads segmented
        first (``anchor_probs``, ``subject_probs``)."""
        anchors = self.anchor_probs(texts) if cfg.relations else None
        subjects = self.subject_probs(texts) if cfg.subjects else None
        return self.candidates(logits, cfg, anchors, subjects)

    def _part_probs(self, parts: list[str | None], rank: bool) -> list[torch.Tensor | None]:
        """Each named part phrase segmented on the current image (D×D probabilities, model-input frame)."""
        named = [i for i, part in enumerate(parts) if part is not None]
        out: list[torch.Tensor | None] = [None] * len(parts)
        if named:
            phrases = [parts[i] for i in named]
            logits, _ = self._decode_texts(phrases)
            if rank and self.model.ranker is not None:
                logits = self._rank(phrases, logits)  # a part is shorter than its phrase: the recursion ends
            for i, part_logits in zip(named, logits, strict=True):
                out[i] = torch.sigmoid(part_logits[0])
        return out

    @torch.inference_mode()
    def anchor_probs(self, texts: Sequence[str]) -> list[torch.Tensor | None]:
        """Where each relational phrase's anchor is: its phrase (``relation_anchor``) segmented on the current
        image, ranked when the model has a ranker.

        Returns:
            Per text, D×D anchor probabilities in the model-input frame, or None when the text names no anchor.
        """
        return self._part_probs([relation_anchor(text) for text in texts], rank=True)

    @torch.inference_mode()
    def subject_probs(self, texts: Sequence[str]) -> list[torch.Tensor | None]:
        """Where the objects of each phrase's kind are: its subject (``relation_subject``, "the tank" of "the tank
        closest to the right edge") segmented on the current image, every match kept (not ranked).

        Returns:
            Per text, D×D subject probabilities in the model-input frame, or None when the phrase is its own subject.
        """
        return self._part_probs([relation_subject(text) for text in texts], rank=False)

    def _rank(self, texts: list[str], logits: torch.Tensor) -> torch.Tensor:
        """The model's candidate ranker applied to N×1×D×D ``logits`` (``ranker.rerank_logits``)."""
        return self._rank_candidates(texts, logits)[0]

    def _rank_candidates(self, texts: list[str], logits: torch.Tensor, cells: list[tuple[int, int]] | None = None,
                         click_labels: list[int] | None = None) -> tuple[torch.Tensor, Candidates]:
        """``_rank``, also returning the candidates the ranker chose among; a user's clicks (one text; D×D cells,
        ``ranker.clicks.click_ranks``) overrule the ranker's choice."""
        ranker = self.model.ranker
        candidates = self.phrase_candidates(texts, logits, ranker.cfg)
        tokens, _, pad = self.model.clip_encoder.encode_text(texts)
        words, _ = self.model.clip_encoder.encode_words(texts)
        ranks = ranker(candidates, tokens, words, pad)
        if cells:
            ranks = click_ranks(ranks, candidates.labels[0].cpu().numpy(), cells, click_labels)
        return rerank_logits(logits, candidates, ranks, candidate_threshold=ranker.cfg.threshold), candidates

    @torch.inference_mode()
    def predict(self, text: str | Sequence[str], with_prompts: bool = False, rank: bool = True, *,
                points: np.ndarray | Sequence[Sequence[float]] | None = None,
                point_labels: np.ndarray | Sequence[int] | None = None,
                box: np.ndarray | Sequence[float] | None = None,
                mask_input: torch.Tensor | None = None) -> Prediction:
        """Masks for one text or a list of texts (one mask each) on the current image.

        Args:
            text: one text or a list of texts (one text when clicks, a box or ``mask_input`` are given).
            with_prompts: also return the prompter's prompts (``Prediction.prompts``), e.g. to decode other
                images of the same scene with ``predict_with_prompts``; not available in zero-shot mode.
            rank: when the model has a candidate ranker, let it choose the named object among the mask's
                connected components (its choice becomes the answer whole, the others keep only the share of
                probability the ranker gives them; ``ranker.rerank_logits``);
                False keeps the decoder's mask as it is (every match, e.g. to find all objects of a kind).
            points: K×2 (x, y) user clicks in pixels of the image given to ``set_image`` (SAM's convention).
            point_labels: K labels, 1 = include the object there, 0 = exclude it.
            box: (4,) x0, y0, x1, y1 in image pixels: the object lies inside.
            mask_input: 1×1×D×D low-resolution logits of the previous answer (``Prediction.next_mask_input``),
                fed back as SAM's mask prompt instead of the phrase's dense prompt, so that clicks edit that
                answer rather than starting over; pass every click so far with it, as SAM's loop does.

        With clicks, a box or ``mask_input``, the phrase's prompter tokens and SAM's point/box tokens are decoded
        together on the cached image embedding (``decode_with_clicks``; the image is never re-encoded); the
        ranker then chooses among the decoded mask's candidates as usual, and the clicks act on those candidates:
        the one under an include click joins the answer, the one under an exclude click leaves it
        (``ranker.clicks.apply_clicks``: the demo model's decoder never saw point tokens in training).
        """
        texts = [text] if isinstance(text, str) else list(text)
        if points is not None or box is not None or mask_input is not None:
            return self._predict_clicked(texts, with_prompts, rank, points, point_labels, box, mask_input)
        logits, outs = self._decode_texts(texts)
        state = self._require_image()
        if rank and outs is not None and self.model.ranker is not None:
            logits = self._rank(texts, logits)
        prediction = self._to_prediction(state, logits, mask_scores(logits))
        if with_prompts:
            if outs is None:
                raise RuntimeError("zero-shot mode has no prompter: refine with SAM box prompts instead")
            prediction.prompts = self._phrase_prompts(state, outs)
        return prediction

    def _phrase_prompts(self, state: _ImageState, outs: list[RefSegOutput]) -> PhrasePrompts:
        dense = unpad_and_resize(torch.cat([o.dense_prompt for o in outs]).float(), state.valid_hw,
                                 state.image_hw, self.input_size)
        return PhrasePrompts(sparse=torch.cat([o.sparse_prompt for o in outs]).float().cpu(),
                             dense=dense[:, 0].cpu().numpy().astype(np.float32))

    def _predict_clicked(self, texts: list[str], with_prompts: bool, rank: bool, points, point_labels, box,
                         mask_input: torch.Tensor | None) -> Prediction:
        """``predict`` with a user's clicks, box or previous answer (see there). Returns N = 1."""
        state = self._require_image()
        if self.mode == "zero-shot":
            raise RuntimeError("zero-shot mode has no prompter: clicks refine a trained model's answer")
        if len(texts) != 1 or not isinstance(texts[0], str) or not texts[0].strip():
            raise ValueError("clicks, a box or a mask input refine one non-empty text at a time")
        clicks = _clicks_to_input_frame(state, points, point_labels, box, self.device)
        d = self.model.config.mask_size
        if mask_input is not None and tuple(mask_input.shape) != (1, 1, d, d):
            raise ValueError(f"mask_input must be 1×1×{d}×{d} low-res logits, got {tuple(mask_input.shape)}")
        with autocast(self.device, self.precision):
            prompts = self.model.prompt(state.embeddings.clip, texts)
            mask = prompts.dense if mask_input is None else mask_input.to(self.device, prompts.dense.dtype)
            logits, _ = self.model.sam_head.decode_with_clicks(state.embeddings.sam, prompts.sparse, mask, *clicks)
        decoded = logits.float()
        if clicks[2] is not None:  # the object lies in the box; what the last answer had there stays
            if mask_input is not None:
                decoded = torch.maximum(decoded, mask_input.to(decoded.device, decoded.dtype))
            decoded = outside_box(decoded, clicks[2], self.input_size)
        cells = [] if clicks[0] is None else click_cells(clicks[0][0], self.input_size,
                                                         self.model.config.mask_size)
        click_labels = [] if clicks[1] is None else clicks[1][0].tolist()
        if rank and self.model.ranker is not None:
            logits, candidates = self._rank_candidates(texts, decoded, cells, click_labels)
            labels = candidates.labels[0].cpu().numpy()
        else:
            logits = decoded
            probs = torch.sigmoid(decoded[0, 0]).cpu().numpy()
            labels = label_components(probs, 0.5, max_candidates=probs.size)
        if cells:
            previous = None if mask_input is None else torch.sigmoid(mask_input[0, 0].float()).cpu().numpy()
            logits = apply_clicks(logits, labels, torch.sigmoid(decoded[0, 0]).cpu().numpy(), cells, click_labels,
                                  previous_probs=previous)
        prediction = self._to_prediction(state, logits, mask_scores(logits))
        prediction.decoded_logits = decoded.cpu()
        if with_prompts:
            dense = unpad_and_resize(prompts.dense.float(), state.valid_hw, state.image_hw, self.input_size)
            prediction.prompts = PhrasePrompts(sparse=prompts.sparse.float().cpu(),
                                               dense=dense[:, 0].cpu().numpy().astype(np.float32))
        return prediction

    @torch.inference_mode()
    def predict_with_box(self, box_xyxy: Sequence[float] | np.ndarray, mask_prior: np.ndarray | None = None
                         ) -> Prediction:
        """Refine with SAM's own prompt encoder: a box and optionally a prior mask.

        Args:
            box_xyxy: (4,) x0, y0, x1, y1 in image pixels.
            mask_prior: H×W foreground probabilities at image resolution (e.g. a coarse mask), or None.

        Returns:
            A ``Prediction`` with N = 1.
        """
        state = self._require_image()
        (h, w), (vh, vw) = state.image_hw, state.valid_hw
        scale = torch.tensor([vw / w, vh / h, vw / w, vh / h], device=self.device)
        box = torch.as_tensor(np.asarray(box_xyxy, np.float32), device=self.device).reshape(1, 4) * scale
        prior = None if mask_prior is None else self._prior_logits(state, mask_prior)
        with autocast(self.device, self.precision):
            logits, _ = self.model.sam_head.decode_with_box(state.embeddings.sam, box, None, prior)
        logits = logits.float()
        return self._to_prediction(state, logits, mask_scores(logits))

    def _prior_logits(self, state: _ImageState, probs: np.ndarray) -> torch.Tensor:
        """H×W probabilities → 1×1×D×D logits in the model-input frame (SAM's mask-input convention)."""
        if probs.shape != state.image_hw:
            raise ValueError(f"mask_prior must be {state.image_hw} (the image), got {probs.shape}")
        prior = self._to_input_frame(state, torch.as_tensor(np.asarray(probs, np.float32), device=self.device)[None])
        return torch.logit(prior.clamp(1e-4, 1 - 1e-4))

    def _to_input_frame(self, state: _ImageState, maps: torch.Tensor, pad_value: float = 0.0) -> torch.Tensor:
        """N×H×W maps at image resolution → N×1×D×D in the model-input frame (resized, padded, D²)."""
        maps = F.interpolate(maps[:, None], size=state.valid_hw, mode="bilinear", align_corners=False)
        size = self.input_size
        maps = F.pad(maps, (0, size - state.valid_hw[1], 0, size - state.valid_hw[0]), value=pad_value)
        mask_size = self.model.config.mask_size
        return F.interpolate(maps, size=(mask_size, mask_size), mode="bilinear", align_corners=False)


def _clicks_to_input_frame(state: _ImageState, points, point_labels, box, device: torch.device
                           ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Image-pixel clicks and box → (points 1×K×2, labels 1×K int64, box 1×4) in the model-input frame.

    Raises:
        ValueError: points not K×2 finite, labels not K values in {0, 1}, or a box that is not x0 < x1, y0 < y1.
    """
    (h, w), (vh, vw) = state.image_hw, state.valid_hw
    scale = np.array([vw / w, vh / h], np.float32)
    pts = labels = box_t = None
    if points is not None:
        xy = np.asarray(points, np.float32).reshape(-1, 2) if len(points) else np.zeros((0, 2), np.float32)
        lab = np.asarray(point_labels if point_labels is not None else [], np.int64).reshape(-1)
        if len(xy) == 0 or len(lab) != len(xy) or not np.isfinite(xy).all() or not np.isin(lab, (0, 1)).all():
            raise ValueError("points must be K×2 finite (x, y) pixels with K labels of 1 (include) or 0 (exclude)")
        pts = torch.as_tensor(xy * scale, device=device)[None]
        labels = torch.as_tensor(lab, device=device)[None]
    if box is not None:
        b = np.asarray(box, np.float32).reshape(-1)
        if b.shape != (4,) or not np.isfinite(b).all() or not (b[0] < b[2] and b[1] < b[3]):
            raise ValueError("box must be x0, y0, x1, y1 pixels with x0 < x1 and y0 < y1")
        box_t = torch.as_tensor(b * np.tile(scale, 2), device=device)[None]
    return pts, labels, box_t
