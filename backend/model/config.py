"""Model configuration as data: JSON files in ``configs/`` parsed into frozen dataclasses.

Every dimension of every part lives in the JSON (open_clip style); builders never hold literal sizes, so the
tiny test configs exercise exactly the classes the real sizes use.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).with_name("configs")
ARCHS = ("rsrefseg2", "rsrefseg")
FROZEN_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA adapters: rank, alpha (scale = alpha / rank), dropout and a regex over module names."""

    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    target: str = ""


@dataclass(frozen=True)
class ClipConfig:
    """The open_clip dual encoder.

    Attributes:
        name: open_clip model name (``ViT-B-16``, ``ViT-SO400M-16-SigLIP2-512``, …) or a free label when
            ``model_cfg`` is given.
        model_cfg: an inline open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, optional
            ``custom_text``); None means "look ``name`` up in open_clip's registry".
        tokenizer: the open_clip model name whose tokenizer to use (defaults to ``name``).
        tokenizer_files: SigLIP 2's Gemma tokenizer instead of open_clip's: a weights-registry name
            (``siglip2-tokenizer``) or a folder holding its ``tokenizer.json`` (see ``gemma_tokenizer``).
        context_length: tokenizer context length (None: the model's own).
        image_size: CLIP input side; the model input is resized to it bilinearly without antialias.
        mean, std: per-channel normalisation of [0, 1] images.
        project_tokens: map text tokens through the text projection into the joint space (CLIP towers,
            whose token width differs from the joint space); SigLIP towers use final-LN tokens as they are.
        vision_lora, text_lora: adapters on the towers (None: no adapters). Targets are regexes over module
            names inside the vision tower (``model.visual``) and the text tower.
    """

    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    model_cfg: dict[str, Any] | None = None
    tokenizer: str | None = None
    tokenizer_files: str | None = None
    context_length: int | None = None
    project_tokens: bool = True
    vision_lora: LoRAConfig | None = None
    text_lora: LoRAConfig | None = None


SAM_FAMILIES = ("sam1", "sam2.1")


@dataclass(frozen=True)
class SamConfig:
    """SAM 1: segment_anything's image encoder, prompt encoder and mask decoder sizes (``build_sam_vit_*``
    names). ``family`` is "sam1", the default, so configs without a family are SAM 1."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    lora: LoRAConfig | None = None
    family: str = "sam1"

    def __post_init__(self) -> None:
        if self.family != "sam1":
            raise ValueError(f"SamConfig is SAM 1; family {self.family!r} needs Sam2Config")
        _check_mask_in_chans(self.mask_in_chans)

    def check_input_size(self, input_size: int) -> None:
        """Raise ValueError when ``input_size`` does not fit the encoder."""
        if input_size % self.patch_size:
            raise ValueError(f"input_size {input_size} is not a multiple of SAM's patch {self.patch_size}")


def _check_mask_in_chans(mask_in_chans: int) -> None:
    # SAM's mask-downscaling path starts with mask_in_chans // 4 channels followed by a channel LayerNorm;
    # with one channel that LayerNorm outputs a constant and the dense prompt gets no gradient.
    if mask_in_chans // 4 < 2:
        raise ValueError(f"sam.mask_in_chans must be at least 8, got {mask_in_chans}")


@dataclass(frozen=True)
class Sam2Config:
    """SAM 2.1's image path: Hiera trunk, FPN neck, prompt encoder and mask decoder (Meta's yaml names).

    Attributes:
        family: "sam2.1".
        name: the size's label, e.g. "sam2.1_hiera_large" (what base-weight files are matched by).
        embed_dim, num_heads: Hiera's first-stage width and heads; both double at every stage change.
        stages: blocks per stage (exactly 4; every stage change pools the queries by 2).
        global_att_blocks: indices of the blocks with global attention; the others attend in windows.
        window_spec: window side per stage (stage 1's also sizes the tiled window positional embedding).
        window_pos_embed_bkg_spatial_size: side of the background positional embedding (bicubic-resized).
        fpn_top_down_levels: FPN levels (0 = stride 4) that receive the nearest-upsampled coarser level.
        prompt_embed_dim: d of the neck, prompt encoder and mask decoder (256).
        mask_in_chans, decoder_depth, decoder_mlp_dim, decoder_num_heads, iou_head_hidden_dim: as SAM 1.
        lora: adapters on the image encoder (names relative to it, e.g. ``trunk.blocks.N.attn.qkv``).
    """

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...]
    window_pos_embed_bkg_spatial_size: tuple[int, int]
    family: str = "sam2.1"
    name: str = "sam2.1"
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    lora: LoRAConfig | None = None

    def __post_init__(self) -> None:
        if self.family != "sam2.1":
            raise ValueError(f"Sam2Config is SAM 2.1; got family {self.family!r}")
        if len(self.stages) != 4 or len(self.window_spec) != 4:
            raise ValueError("sam.stages and sam.window_spec need exactly 4 entries (Hiera's four stages)")
        _check_mask_in_chans(self.mask_in_chans)

    @property
    def patch_size(self) -> int:
        """Input pixels per cell of the image embedding (Hiera's stride-16 level)."""
        return 16

    def check_input_size(self, input_size: int) -> None:
        """Raise ValueError unless the input halves evenly through Hiera's stages (stride 32) and the
        first stage's grid holds whole windows (the window positional embedding is tiled over it)."""
        if input_size % 32:
            raise ValueError(f"input_size {input_size} is not a multiple of 32 (Hiera's coarsest stride)")
        if (input_size // 4) % self.window_spec[0]:
            raise ValueError(f"input_size {input_size}: Hiera's stride-4 grid {input_size // 4} is not a multiple "
                             f"of the first window {self.window_spec[0]}")


@dataclass(frozen=True)
class PrompterConfig:
    """Prompter sizes. v2 uses all fields but ``hidden_dim``; v1 uses only ``hidden_dim`` (its conv width).

    Attributes:
        attn_dim: internal q/k/v dim of every attention (512 in the method).
        num_heads: attention heads (8).
        mlp_dim: hidden width of every MLP (512).
        num_queries: tokens per decomposed text query set Q1/Q2 (3).
        num_prompts: learned prompt tokens P (9).
        text_layers, activation_layers, prompt_layers: depths of stages 0, 1 and 2 (2 each).
        pe_grid: side of the learned image PE grid (32; bicubic-resized to the CLIP grid when different).
        hidden_dim: v1's conv width (256).
    """

    attn_dim: int = 512
    num_heads: int = 8
    mlp_dim: int = 512
    num_queries: int = 3
    num_prompts: int = 9
    text_layers: int = 2
    activation_layers: int = 2
    prompt_layers: int = 2
    pe_grid: int = 32
    hidden_dim: int = 256


@dataclass(frozen=True)
class RankerConfig:
    """The optional candidate ranker (``ranker.ComponentRanker``), trained after the model on its own masks.

    Attributes:
        width: token width of the candidate transformer.
        layers: decoder layers (self-attention over candidates, cross-attention to the text tokens, MLP).
        num_heads: attention heads.
        threshold: a candidate is a connected component of the low-res mask above this probability.
        max_candidates: at most this many candidates per mask (the most massive).
        close_gaps: close the thresholded mask this many times (3×3) before finding components, so that the
            fragments of one weakly drawn object form one candidate, drawn whole with its gaps when chosen.
        relations: the ranker also reads how candidates relate to each other (rank by area) and to the anchor
            of a relational phrase ("next to the large pond"), which the predictor segments first.
        subjects: the ranker also reads how much of each candidate the phrase's subject covers ("the tank" of
            "the tank closest to the right edge"), which the predictor segments first.
    """

    width: int = 128
    layers: int = 2
    num_heads: int = 4
    threshold: float = 0.5
    max_candidates: int = 16
    close_gaps: int = 0
    relations: bool = False
    subjects: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """A whole model: architecture, its three parts and the input geometry.

    ``frozen_dtype`` is how the frozen (pre-trained) weights are stored: "float32", or "bfloat16" as the paper
    model's authors released them (half the memory; computed in fp32 or bf16 per layer,
    ``device.cast_weights_per_layer``).
    Trained parts (prompter, LoRA adapters, SAM's decoder) are always float32.
    """

    arch: str
    clip: ClipConfig
    sam: SamConfig | Sam2Config
    prompter: PrompterConfig = field(default_factory=PrompterConfig)
    ranker: RankerConfig | None = None
    input_size: int = 1024
    keep_ratio: bool = True
    seed: int = 0
    frozen_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {ARCHS}")
        if self.frozen_dtype not in FROZEN_DTYPES:
            raise ValueError(f"unknown frozen_dtype {self.frozen_dtype!r}; expected one of {FROZEN_DTYPES}")
        self.sam.check_input_size(self.input_size)

    @property
    def sam_grid(self) -> int:
        """Side of SAM's image embedding (64 for 1024² inputs)."""
        return self.input_size // self.sam.patch_size

    @property
    def mask_size(self) -> int:
        """Side D of the low-res mask logits and the dense prompt (4 × the SAM grid)."""
        return 4 * self.sam_grid

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that ``config_from_dict`` turns back into an equal config."""
        return asdict(self)


def _lora(data: dict[str, Any] | None) -> LoRAConfig | None:
    return None if data is None else LoRAConfig(**data)


def _strict(cls: type, data: dict[str, Any], where: str) -> None:
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown keys in {where}: {sorted(unknown)}")


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Parse a dict (as in the JSON files) into a ``ModelConfig``; unknown keys are an error."""
    _strict(ModelConfig, data, "model config")
    clip = dict(data["clip"])
    _strict(ClipConfig, clip, "clip")
    clip["mean"], clip["std"] = tuple(clip["mean"]), tuple(clip["std"])
    clip["vision_lora"] = _lora(clip.get("vision_lora"))
    clip["text_lora"] = _lora(clip.get("text_lora"))
    prompter = dict(data.get("prompter", {}))
    _strict(PrompterConfig, prompter, "prompter")
    ranker = data.get("ranker")
    if ranker is not None:
        _strict(RankerConfig, ranker, "ranker")
        ranker = RankerConfig(**ranker)
    rest = {k: v for k, v in data.items() if k not in ("clip", "sam", "prompter", "ranker")}
    return ModelConfig(clip=ClipConfig(**clip), sam=_sam(data["sam"]), prompter=PrompterConfig(**prompter),
                       ranker=ranker, **rest)


def _sam(data: dict[str, Any]) -> SamConfig | Sam2Config:
    """The ``sam`` section: SAM 1 unless ``family`` says "sam2.1"."""
    sam = dict(data)
    family = sam.get("family", "sam1")
    if family not in SAM_FAMILIES:
        raise ValueError(f"unknown sam.family {family!r}; expected one of {SAM_FAMILIES}")
    cls = SamConfig if family == "sam1" else Sam2Config
    _strict(cls, sam, "sam")
    for f in fields(cls):
        if f.name in sam and isinstance(sam[f.name], list):
            sam[f.name] = tuple(sam[f.name])
    sam["lora"] = _lora(sam.get("lora"))
    return cls(**sam)


def available_configs() -> list[str]:
    """Names of the bundled configs (file stems in ``configs/``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """Load a bundled config by name (``"tiny"``, ``"rsrefseg2-b16"``, …) or a JSON file by path.

    Raises:
        FileNotFoundError: naming the bundled configs when neither a name nor a file matches.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no model config {str(name_or_path)!r}; bundled: {', '.join(available_configs())}")
    return config_from_dict(json.loads(path.read_text(encoding="utf-8")))
