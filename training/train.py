"""Train RSRefSeg 2 / RSRefSeg: ``python -m training.train --config configs/tiny.yaml [--resume]``.

Multi-GPU: ``torchrun --nproc_per_node N -m training.train --config …`` (DistributedDataParallel, one
DistributedSampler shard per rank; rank 0 logs, validates and writes checkpoints). AdamW on the trainable
parameters only (prompter, LoRA, SAM decoder/prompt encoder, CLIP logit scale/bias, the loss head), the
paper's warm-up + cosine schedule per optimizer step, bf16 autocast on CUDA, gradient accumulation and
clipping. Every ``checkpoint_every`` steps rank 0 writes the plugin checkpoint (``model_last``, the model's
``save_checkpoint`` format) and a resumable training state (``training.state``); ``--resume`` continues from
the newest state, reproducing the uninterrupted run's data order.

Run folder: ``train_config.yaml``, ``checkpoints/`` (``model_last``, ``model_best`` by validation gIoU,
``model_final``, ``state_*``), ``tb/`` (TensorBoard).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from backend.model.checkpoint.io import CheckpointMeta, save_checkpoint, trained_state_keys
from backend.model.config import load_config
from training.config import TrainConfig, load_train_config
from training.data.dataset import ReferringDataset, collate
from training.data.grouped import ImageGroupedDataset, collate_groups
from training.data.records import load_records
from training.distributed import DistInfo, cleanup_distributed, setup_distributed
from training.evaluate import evaluate_model
from training.init_from import initial_model
from training.losses import RefSegLoss
from training.schedule import lr_factor
from training.state import latest_state, load_training_state, save_training_state

KEEP_STATES = 2
BEST = "best.json"  # gIoU and step of model_best, so a resumed run keeps the better model


class TrainModule(nn.Module):
    """The model and its loss as one module, so DDP also all-reduces the loss head's trainable scalars."""

    def __init__(self, *, model: nn.Module, criterion: RefSegLoss) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, images: torch.Tensor, texts: list[str], labels: torch.Tensor,
                image_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """images B×3×S×S in [0, 1] (or U×3×S×S and ``image_index`` B, see ``ReferringSegmenter.forward``),
        texts B phrases, labels B×S×S {0, 1, 255} → the loss terms."""
        return self.criterion(self.model(images, texts, image_index), labels, image_index)


@dataclass
class TrainResult:
    """What a run leaves: the module, the loss per optimizer step taken in this call, the final checkpoint."""

    module: TrainModule
    losses: list[float] = field(default_factory=list)
    checkpoint: Path | None = None


def build_train_module(cfg: TrainConfig) -> TrainModule:
    """Build (seeded) or load (``init_from``) the model, and its loss; freeze everything the model does not list as
    trainable."""
    model_cfg = load_config(cfg.model)
    torch.manual_seed(cfg.seed)
    model = initial_model(cfg, model_cfg)
    trainable = set(model.trainable_parameter_names())
    for name, param in model.named_parameters():
        param.requires_grad_(cfg.train_base or name in trainable)
    model.meta = CheckpointMeta.from_dict(cfg.meta)
    weights = cfg.loss
    criterion = RefSegLoss(arch=model_cfg.arch, bce_weight=weights.bce, dice_weight=weights.dice,
                           decorrelation_weight=weights.decorrelation, contrastive_weight=weights.contrastive,
                           distractor_weight=weights.distractor)
    return TrainModule(model=model, criterion=criterion)


def trainable_params(module: TrainModule) -> dict[str, nn.Parameter]:
    """The parameters the optimizer updates, by name."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def resumable_weights(module: TrainModule) -> dict[str, torch.Tensor]:
    """What a resumed run must restore besides the optimizer: trainable parameters and the buffers of trained
    modules, by ``module.state_dict()`` name (the tensors share storage with the module)."""
    keys = {f"model.{k}" for k in trained_state_keys(module.model)}
    keys |= {f"criterion.{n}" for n, _ in module.criterion.named_parameters()}
    return {k: v for k, v in module.state_dict().items() if k in keys}


def _loader(dataset: ReferringDataset, sampler: DistributedSampler, cfg: TrainConfig, epoch: int,
            skip_batches: int) -> DataLoader:
    """This rank's batches of ``epoch``, starting after ``skip_batches`` (resume mid-epoch)."""
    sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    indices = list(sampler)[skip_batches * cfg.batch_size:]
    collate_fn = collate_groups if isinstance(dataset, ImageGroupedDataset) else collate
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=True, collate_fn=collate_fn,
                      num_workers=cfg.data.num_workers, persistent_workers=False)


def _train_dataset(cfg: TrainConfig, input_size: int, keep_ratio: bool) -> ReferringDataset:
    """The training split, per phrase or (``data.phrases_per_image``) per image with its phrases."""
    records = load_records(cfg.data.format, cfg.data.root, cfg.data.train_split, cfg.data.image_dir)
    common = {"input_size": input_size, "keep_ratio": keep_ratio, "hflip_prob": cfg.data.hflip_prob,
              "vflip_prob": cfg.data.vflip_prob, "seed": cfg.seed}
    if cfg.data.phrases_per_image is None:
        return ReferringDataset(records, **common)
    return ImageGroupedDataset(records, phrases_per_image=cfg.data.phrases_per_image, **common)


def _prune_states(checkpoint_dir: Path, keep: int) -> None:
    states = sorted(checkpoint_dir.glob("state_*.json"))
    for old in states[:-keep]:
        old.unlink()
        old.with_suffix(".safetensors").unlink(missing_ok=True)


def _save(module: TrainModule, optimizer: torch.optim.Optimizer, cfg: TrainConfig, step: int, epoch: int) -> None:
    checkpoint_dir = Path(cfg.output_dir) / "checkpoints"
    save_checkpoint(module.model, checkpoint_dir / "model_last.safetensors", include_base=cfg.include_base)
    save_training_state(checkpoint_dir / f"state_{step:08d}", step=step, epoch=epoch,
                        weights=resumable_weights(module), optimizer=optimizer)
    _prune_states(checkpoint_dir, KEEP_STATES)


def _validate(module: TrainModule, cfg: TrainConfig, records: list, device: torch.device, writer: SummaryWriter,
              step: int, best: float) -> float:
    """Score the validation split (rank 0), log it, keep ``model_best`` by gIoU; returns the best gIoU."""
    metrics = evaluate_model(module.model, records, device=device)
    module.model.train()
    for key in ("gIoU", "cIoU", "Pr@0.5", "Pr@0.9"):
        writer.add_scalar(f"val/{key}", metrics[key], step)
    for phrase_type, summary in metrics["per_phrase_type"].items():
        writer.add_scalar(f"val/gIoU_{phrase_type}", summary["gIoU"], step)
    tqdm.write(f"step {step}: val gIoU {metrics['gIoU']:.2f} cIoU {metrics['cIoU']:.2f} "
               + " ".join(f"{k}={v['gIoU']:.2f}" for k, v in metrics["per_phrase_type"].items()))
    if metrics["gIoU"] <= best:
        return best
    checkpoint_dir = Path(cfg.output_dir) / "checkpoints"
    save_checkpoint(module.model, checkpoint_dir / "model_best.safetensors", include_base=cfg.include_base)
    (checkpoint_dir / BEST).write_text(json.dumps({"gIoU": metrics["gIoU"], "step": step}))
    return metrics["gIoU"]


def train(cfg: TrainConfig, *, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    """Run (or resume) one training.

    Args:
        cfg: the training config.
        resume: continue from the newest state in ``output_dir/checkpoints`` (a fresh start if none).
        stop_after: return after this many optimizer steps in total without the final checkpoint (what a
            crash looks like to the next ``--resume``).

    Returns:
        The trained module, this call's per-step losses and the final plugin checkpoint (None if stopped).
    """
    info = setup_distributed()
    out_dir = Path(cfg.output_dir)
    checkpoint_dir = out_dir / "checkpoints"
    if info.is_main:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    module = build_train_module(cfg).to(info.device)
    if info.distributed and info.device.type == "cuda":  # BatchNorm over the global batch (the paper's SyncBN)
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    model_cfg = module.model.config
    dataset = _train_dataset(cfg, model_cfg.input_size, model_cfg.keep_ratio)
    val_records = (load_records(cfg.data.format, cfg.data.root, cfg.data.val_split, cfg.data.image_dir)
                   if cfg.data.val_split and cfg.val_every_epochs and info.is_main else [])
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size // cfg.accumulation
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} training samples are too few for batch {cfg.batch_size} × "
                         f"accumulation {cfg.accumulation} × {info.world_size} ranks; lower them or add data")
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    params = trainable_params(module)
    optimizer = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    step = 0
    prefix = latest_state(checkpoint_dir) if resume else None
    if prefix is not None:
        step, _ = load_training_state(prefix, weights=resumable_weights(module), optimizer=optimizer)
    elif resume and info.is_main:
        tqdm.write(f"warning: --resume found no training state in {checkpoint_dir} (no last.json): starting at step 0")
    runner: nn.Module = module
    if info.distributed:
        runner = DistributedDataParallel(module, device_ids=[info.device.index] if info.device.index is not None
                                         else None, find_unused_parameters=cfg.find_unused_parameters)
    writer = SummaryWriter(str(out_dir / "tb")) if info.is_main else None
    result = TrainResult(module=module)
    best_file = checkpoint_dir / BEST
    best = json.loads(best_file.read_text())["gIoU"] if resume and best_file.is_file() else -math.inf
    progress = tqdm(total=total_steps, initial=step, disable=not info.is_main, desc="train")
    module.train()
    while step < total_steps:
        epoch = step // steps_per_epoch
        skip = (step - epoch * steps_per_epoch) * cfg.accumulation
        step = _run_epoch(runner, module, optimizer, _loader(dataset, sampler, cfg, epoch, skip), cfg, info,
                          step, min(total_steps, (epoch + 1) * steps_per_epoch), steps_per_epoch, writer,
                          progress, result, stop_after)
        if stop_after is not None and step >= stop_after:
            break
        if step % steps_per_epoch == 0 and val_records and (step // steps_per_epoch) % cfg.val_every_epochs == 0:
            best = _validate(module, cfg, val_records, info.device, writer, step, best)
    progress.close()
    if info.is_main and (stop_after is None or step < stop_after):
        result.checkpoint = checkpoint_dir / "model_final.safetensors"
        save_checkpoint(module.model, result.checkpoint, include_base=cfg.include_base)
    if writer is not None:
        writer.close()
    cleanup_distributed()
    return result


def _run_epoch(runner: nn.Module, module: TrainModule, optimizer: torch.optim.Optimizer, loader: DataLoader,
               cfg: TrainConfig, info: DistInfo, step: int, end_step: int, steps_per_epoch: int,
               writer: SummaryWriter | None, progress: tqdm, result: TrainResult, stop_after: int | None) -> int:
    """Optimizer steps over ``loader`` until ``end_step`` (or ``stop_after``); returns the new step."""
    micro, sums = 0, {}
    use_amp = cfg.amp and info.device.type == "cuda"
    for batch in loader:
        micro += 1
        sync = micro == cfg.accumulation
        images = batch["image"].to(info.device, non_blocking=True)
        labels = batch["mask"].to(info.device, non_blocking=True)
        image_index = batch.get("image_index")
        if image_index is not None:
            image_index = image_index.to(info.device, non_blocking=True)
        context = runner.no_sync() if info.distributed and not sync else contextlib.nullcontext()
        with context, torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=use_amp):
            terms = runner(images, batch["sentence"], labels, image_index)
            (terms["loss"] / cfg.accumulation).backward()
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) / cfg.accumulation
        if not sync:
            continue
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(trainable_params(module).values(), cfg.grad_clip)
        lr = cfg.lr * lr_factor(step, steps_per_epoch, cfg.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        result.losses.append(sums["loss"])
        progress.update(1)
        progress.set_postfix(loss=f"{sums['loss']:.4f}", lr=f"{lr:.2e}")
        if writer is not None and step % cfg.log_every == 0:
            for key, value in sums.items():
                writer.add_scalar(f"train/{key}", value, step)
            writer.add_scalar("train/lr", lr, step)
        micro, sums = 0, {}
        if info.is_main and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            _save(module, optimizer, cfg, step, step // steps_per_epoch)
        if step >= end_step or (stop_after is not None and step >= stop_after):
            break
    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train an RSRefSeg 2 / RSRefSeg checkpoint.")
    parser.add_argument("--config", type=Path, required=True, help="YAML training config (configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest state in output_dir")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--max-steps", type=int, help="override the config's max_steps")
    parser.add_argument("--data-root", help="override the config's data root")
    parser.add_argument("--threads", type=int, help="torch intra-op CPU threads (1 is fastest on a busy small CPU)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in (("output_dir", args.output_dir), ("max_steps", args.max_steps)) if v is not None}
    cfg = load_train_config(args.config, **overrides)
    if args.data_root is not None:
        cfg = replace(cfg, data=replace(cfg.data, root=args.data_root))
    result = train(cfg, resume=args.resume)
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}")


if __name__ == "__main__":
    main()
