"""The RSRefSeg 2 / RSRefSeg model in plain PyTorch on open_clip + segment_anything."""

from .build import MODEL_REGISTRY, build_model
from .checkpoint import load_model, save_checkpoint
from .config import ModelConfig, load_config
from .outputs import ImageEmbeddings, RefSegOutput

__all__ = ["MODEL_REGISTRY", "ImageEmbeddings", "ModelConfig", "RefSegOutput", "build_model", "load_config",
           "load_model", "save_checkpoint"]
