"""Training configuration as data: a YAML file parsed into a frozen dataclass (unknown keys are an error)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class DataConfig:
    """Where the data is.

    Attributes:
        format: "jsonl", "rrsisd", "refsegrs" or "risbench" (``training.data.records.FORMATS``).
        root: dataset root (benchmarks) or the folder of ``{split}.jsonl`` / a ``.jsonl`` file (plain format).
            Relative paths are relative to the current directory.
        image_dir: benchmark image folder override.
        train_split, val_split: split names; ``val_split`` None disables validation.
        hflip_prob, vflip_prob: phrase-safe flip probabilities (0 = off, as in the paper).
        num_workers: DataLoader worker processes per rank.
        phrases_per_image: None: batches of independent phrases; K: batches of images, each with up to K of its
            phrases, every image encoded once (``training.data.grouped``); ``batch_size`` then counts images.
    """

    format: str
    root: str
    image_dir: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    hflip_prob: float = 0.0
    vflip_prob: float = 0.0
    num_workers: int = 2
    phrases_per_image: int | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule in epochs, applied per optimizer step (METHOD.md §4).

    Linear warm-up from ``warmup_start_factor``× over ``[0, warmup_epochs)``, constant base LR until
    ``cosine_begin_epoch``, cosine annealing with period ``cosine_t_max_epochs`` towards ``eta_min_factor``×
    until ``cosine_end_epoch``, then the LR stays where the cosine left it.
    """

    warmup_epochs: float = 5.0
    warmup_start_factor: float = 0.01
    cosine_begin_epoch: float = 30.0
    cosine_end_epoch: float = 300.0
    cosine_t_max_epochs: float = 390.0
    eta_min_factor: float = 0.01


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (``training.losses.RefSegLoss``); the defaults are the paper's (METHOD.md §4).

    ``distractor`` is ours and off by default: with image-grouped batches, the mean BCE on the pixels of the other
    phrases' objects in the same image (the likeliest wrong answers), which a whole-image BCE and Dice barely see.
    """

    bce: float = 5.0
    dice: float = 5.0
    decorrelation: float = 0.5
    contrastive: float = 0.5
    distractor: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        model: a bundled model config name ("tiny", "rsrefseg2-paper", …) or a JSON path.
        data: the data; schedule: the LR schedule; loss: the loss-term weights.
        output_dir: run folder (checkpoints, TensorBoard logs, ``train_config.yaml``).
        epochs: training length; ``max_steps`` caps it in optimizer steps when set.
        batch_size: samples (images when ``data.phrases_per_image`` is set) per rank per micro-step;
            accumulation: micro-steps per optimizer step.
        lr, weight_decay, betas: AdamW on the trainable parameters only.
        grad_clip: max global grad norm (None: no clipping).
        amp: bf16 autocast when on CUDA (ignored on CPU).
        seed: seeds model init order, data order and augmentation.
        checkpoint_every: optimizer steps between resumable checkpoints (0: only at the end).
        log_every: optimizer steps between TensorBoard scalars.
        val_every_epochs: epochs between validations (0: never).
        include_base: put the base CLIP/SAM weights in the plugin checkpoint (needed for random-init models).
        train_base: train every weight, base encoders included (for models trained from random init, where a
            frozen random base has nothing to preserve and would leave the text tower deaf); False keeps the
            method's frozen/trainable split.
        meta: what the written checkpoints say about themselves (``backend.model.checkpoint.io.CheckpointMeta``
            fields: ``title``, ``description``, ``gsd_range_m`` = the metres per pixel at the model input the
            data covers, ``dataset``), so the plugin can name the model and read views at its scale.
        weights: base-weight files (``clip``, ``sam``) for ``build_model``; empty = random init.
        init_from: fine-tune a trained or imported checkpoint (its name, e.g. "rsrefseg2-rrsisd" after ``weights
            download``, or a ``.safetensors`` path) instead of starting from the base encoders: the whole model is
            loaded from it (made with the ``model`` config), its LoRA restarts fresh on the folded weights and the
            prompter and decoder continue from its values (``training.init_from``). An imported checkpoint needs
            ``include_base: true``.
        find_unused_parameters: passed to DistributedDataParallel. True by default: some trainable SAM parts
            get no gradient (the IoU head, the point, not-a-point and no-mask embeddings).
    """

    model: str
    data: DataConfig
    output_dir: str
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 300
    max_steps: int | None = None
    batch_size: int = 8
    accumulation: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 3.0
    amp: bool = True
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    val_every_epochs: int = 10
    include_base: bool = False
    train_base: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    init_from: str | None = None
    find_unused_parameters: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that ``config_from_dict`` turns back into an equal config."""
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out


def _strict(cls: type, data: dict[str, Any], where: str) -> None:
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown keys in {where}: {sorted(unknown)}; allowed: {sorted(f.name for f in fields(cls))}")


def config_from_dict(data: dict[str, Any], **overrides: Any) -> TrainConfig:
    """Parse a dict (as in the YAML files) into a ``TrainConfig``, then apply top-level ``overrides``."""
    data = {**data, **overrides}
    _strict(TrainConfig, data, "training config")
    _strict(DataConfig, data["data"], "data")
    schedule = data.get("schedule", {})
    _strict(ScheduleConfig, schedule, "schedule")
    loss = data.get("loss", {})
    _strict(LossConfig, loss, "loss")
    rest = {k: v for k, v in data.items() if k not in ("data", "schedule", "loss")}
    if "betas" in rest:
        rest["betas"] = tuple(rest["betas"])
    return TrainConfig(data=DataConfig(**data["data"]), schedule=ScheduleConfig(**schedule),
                       loss=LossConfig(**loss), **rest)


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Load a YAML training config (``configs/*.yaml``); ``overrides`` replace top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training config {path}; see configs/ at the repository root")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), **overrides)
