"""Train the candidate ranker of a trained checkpoint on that model's own masks:
``python -m training.train_ranker --checkpoint X --data DATASET --out Y.safetensors``.

The segmentation model stays frozen. Each training phrase is run once through the plugin's predictor; the
connected components of its low-resolution mask become candidates (``ranker.features``), labelled with their
IoU against the phrase's object. The ranker (``ranker.ComponentRanker``) learns to put the candidate that
overlaps the object most first (softmax cross-entropy over a phrase's candidates; phrases whose mask misses the
object, or has one candidate only, teach nothing and are skipped). The output is the whole checkpoint with the
ranker added, so the plugin loads it like any other.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from backend.model.authors.location import resolve_checkpoint
from backend.model.build import build_ranker
from backend.model.checkpoint.io import load_model, save_checkpoint
from backend.model.config import RankerConfig
from backend.model.ranker.features import Candidates
from backend.model.ranker.ranker import ComponentRanker
from backend.predictor import ReferringPredictor
from training.data.io import read_image, read_mask
from training.data.records import Record, load_records
from training.evaluate import detect_format


@dataclass
class PhraseCandidates:
    """One phrase's candidates as the ranker reads them.

    Attributes:
        features: K×F candidate features (``ranker.features.feature_count``).
        ious: K IoU of each candidate with the phrase's object (low-resolution input frame).
        tokens: L×C the phrase's contextual text tokens (no padding).
        words: L×W its context-free word features.
        phrase_type: the record's phrase type (for the report).
    """

    features: torch.Tensor
    ious: torch.Tensor
    tokens: torch.Tensor
    words: torch.Tensor
    phrase_type: str


def _ious(labels: torch.Tensor, target: torch.Tensor, count: int) -> torch.Tensor:
    """IoU of candidates 1..count of D×D ``labels`` with a D×D bool ``target``. Returns (count,)."""
    onehot = labels[None] == torch.arange(1, count + 1)[:, None, None]
    inter = (onehot & target).flatten(1).sum(dim=1)
    union = (onehot | target).flatten(1).sum(dim=1)
    return inter / union.clamp(min=1)


@torch.no_grad()
def collect(predictor: ReferringPredictor, records: list[Record], cfg: RankerConfig, progress: bool = False
            ) -> list[PhraseCandidates]:
    """Run the frozen model on every record and gather its candidates, IoUs and text tokens."""
    model = predictor.model
    by_image: dict[Path, list[Record]] = {}
    for record in records:
        by_image.setdefault(record.image, []).append(record)
    out = []
    bar = tqdm(total=len(records), disable=not progress, desc="candidates")
    for image_path, group in by_image.items():
        image = read_image(image_path)
        height, width = image.shape[:2]
        predictor.set_image(image)
        texts = [r.sentence for r in group]
        candidates = predictor.phrase_candidates(texts, predictor.predict_low_res(texts), cfg)
        tokens, _, pad = model.clip_encoder.encode_text(texts)
        words, _ = model.clip_encoder.encode_words(texts)
        for i, record in enumerate(group):
            target = predictor.to_input_frame(read_mask(record, height, width).astype(np.float32)[None])[0, 0] > 0.5
            count = int(candidates.valid[i].sum())
            out.append(PhraseCandidates(features=candidates.features[i, :count].cpu(),
                                        ious=_ious(candidates.labels[i].cpu(), target.cpu(), count),
                                        tokens=tokens[i][~pad[i]].float().cpu(),
                                        words=words[i][~pad[i]].float().cpu(),
                                        phrase_type=record.phrase_type or ""))
            bar.update(1)
    bar.close()
    return out


def _batch(items: list[PhraseCandidates]) -> tuple[Candidates, torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor]:
    """Pad a list of phrases into (candidates, tokens B×L×C, words B×L×W, pad B×L, ious B×K)."""
    k = max(len(item.ious) for item in items)
    features = torch.zeros(len(items), k, items[0].features.shape[1])
    ious = torch.zeros(len(items), k)
    valid = torch.zeros(len(items), k, dtype=torch.bool)
    length = max(len(item.tokens) for item in items)
    tokens = torch.zeros(len(items), length, items[0].tokens.shape[1])
    words = torch.zeros(len(items), length, items[0].words.shape[1])
    pad = torch.ones(len(items), length, dtype=torch.bool)
    for i, item in enumerate(items):
        n, m = len(item.ious), len(item.tokens)
        features[i, :n], ious[i, :n], valid[i, :n] = item.features, item.ious, True
        tokens[i, :m], words[i, :m], pad[i, :m] = item.tokens, item.words, False
    labels = torch.zeros(len(items), 1, 1, dtype=torch.long)  # not read by the ranker
    return Candidates(labels=labels, features=features, valid=valid), tokens, words, pad, ious


def teaching(items: list[PhraseCandidates]) -> list[PhraseCandidates]:
    """The phrases a ranker can learn from: two or more candidates, one of them overlapping the object."""
    return [item for item in items if len(item.ious) > 1 and float(item.ious.max()) > 0]


def train(ranker: ComponentRanker, items: list[PhraseCandidates], *, epochs: int, batch_size: int, lr: float,
          seed: int) -> list[float]:
    """Softmax cross-entropy towards each phrase's best-overlapping candidate, after setting the ranker's
    feature standardisation from these phrases' candidates. Returns the loss per epoch."""
    rng = random.Random(seed)
    items = teaching(items)
    if not items:
        raise ValueError("no phrase has two or more candidates with one overlapping its object: the model's masks "
                         "give a ranker nothing to learn (more phrases, or a model that finds more objects)")
    ranker.set_feature_statistics(torch.cat([item.features for item in items]))
    optimizer = torch.optim.AdamW(ranker.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * max(1, len(items) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    losses = []
    ranker.train()
    for _ in range(epochs):
        order = list(range(len(items)))
        rng.shuffle(order)
        total, count = 0.0, 0
        for start in range(0, len(order) - batch_size + 1, batch_size):
            candidates, tokens, words, pad, ious = _batch([items[i] for i in order[start:start + batch_size]])
            logits = ranker(candidates, tokens, words, pad)
            loss = F.cross_entropy(logits, ious.argmax(dim=1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item(), count + 1
        losses.append(total / max(count, 1))
    ranker.eval()
    return losses


@torch.no_grad()
def choice_report(ranker: ComponentRanker | None, items: list[PhraseCandidates]) -> dict[str, float]:
    """Mean IoU of the chosen candidate (low-resolution frame): the ranker's first choice, or the most massive
    candidate when ``ranker`` is None. Phrases without candidates count 0. Per phrase type and overall."""
    scores: dict[str, list[float]] = {}
    for start in range(0, len(items), 256):
        chunk = items[start:start + 256]
        present = [item for item in chunk if len(item.ious)]
        picks = [0] * len(present)
        if ranker is not None and present:
            candidates, tokens, words, pad, _ = _batch(present)
            picks = ranker(candidates, tokens, words, pad).argmax(dim=1).tolist()
        for item, pick in zip(present, picks, strict=True):
            scores.setdefault(item.phrase_type, []).append(float(item.ious[pick]))
        for item in chunk:
            if not len(item.ious):
                scores.setdefault(item.phrase_type, []).append(0.0)
    report = {key: 100 * float(np.mean(values)) for key, values in sorted(scores.items())}
    report["all"] = 100 * float(np.mean([v for values in scores.values() for v in values]))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a checkpoint's candidate ranker on its own masks.")
    parser.add_argument("--checkpoint", type=resolve_checkpoint, required=True, help="the trained model")
    parser.add_argument("--data", type=Path, required=True, help="dataset with a training split")
    parser.add_argument("--split", default="train")
    parser.add_argument("--val-data", type=Path, help="dataset whose --val-split reports the choice (default: none)")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint with its ranker (.safetensors)")
    parser.add_argument("--limit", type=int, help="use only the first N training records")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=RankerConfig.width)
    parser.add_argument("--layers", type=int, default=RankerConfig.layers)
    parser.add_argument("--threshold", type=float, default=RankerConfig.threshold,
                        help="candidates are the connected components above this probability")
    parser.add_argument("--close-gaps", type=int, default=RankerConfig.close_gaps,
                        help="close the thresholded mask this many times (3x3) first, so that the fragments of "
                             "one weakly drawn object form one candidate")
    parser.add_argument("--relations", action="store_true",
                        help="also read how candidates relate to each other and to a relational phrase's anchor, "
                             "segmented with the checkpoint's own ranker when it has one")
    parser.add_argument("--subjects", action="store_true",
                        help="also read how much of each candidate the phrase's subject ('the tank' of 'the tank "
                             "closest to the right edge') covers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.close_gaps < 0:
        parser.error(f"--close-gaps must be 0 or more, got {args.close_gaps}")  # before hours of work, not after
    if args.out.exists() or args.out.with_suffix(".json").exists():
        parser.error(f"{args.out} (or its .json) exists; choose another --out")
    args.out.parent.mkdir(parents=True, exist_ok=True)  # before hours of work, not after
    model = load_model(args.checkpoint)
    config = dataclasses.replace(model.config, ranker=RankerConfig(width=args.width, layers=args.layers,
                                                                       threshold=args.threshold,
                                                                       close_gaps=args.close_gaps,
                                                                       relations=args.relations,
                                                                       subjects=args.subjects))
    predictor = ReferringPredictor(model, device="cpu")
    records = load_records(detect_format(args.data, args.split), args.data, args.split)[: args.limit]
    items = collect(predictor, records, config.ranker, progress=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        ranker = build_ranker(config.ranker, model.clip_encoder)
    losses = train(ranker, items, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    report = {"train_loss": losses, "phrases": len(items), "teaching_phrases": len(teaching(items)),
              "train": {"mass": choice_report(None, items), "ranker": choice_report(ranker, items)}}
    if args.val_data:
        val_records = load_records(detect_format(args.val_data, args.val_split), args.val_data, args.val_split)
        val_items = collect(predictor, val_records, config.ranker)
        report["val"] = {"mass": choice_report(None, val_items), "ranker": choice_report(ranker, val_items),
                         "oracle": {"all": 100 * float(np.mean([float(i.ious.max()) if len(i.ious) else 0.0
                                                                for i in val_items]))}}
    model.config = config
    model.ranker = ranker
    ranked_on = f"candidate ranker: training.train_ranker on {args.data} ({len(items)} phrases)"
    model.meta = dataclasses.replace(model.meta, dataset="; ".join(filter(None, [model.meta.dataset, ranked_on])))
    save_checkpoint(model, args.out, include_base=True)
    args.out.with_suffix(".ranker.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
