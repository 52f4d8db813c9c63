"""The RSRefSeg 2 / RSRefSeg model in plain PyTorch on open_clip + segment_anything.

Layers, bottom first (a module imports only from its own folder and the layers below; ``tests/test_layering.py``):

1. ``config`` (configs as data), ``outputs`` (what the model returns), ``device``, ``transforms``;
2. ``lora`` (adapters) and ``weight_io/`` (weight files read safely);
3. the parts: ``clip/`` (dual encoder), ``prompter/`` (v1 and v2), ``sam/`` (SAM 1 and the shared mask head),
   ``ranker/`` (candidate ranker); then ``sam2/`` (SAM 2.1 Hiera, on the shared mask head);
4. ``architectures/`` (the full RSRefSeg 2, RSRefSeg and zero-shot segmenters);
5. ``build`` (one builder from a config), then ``checkpoint/`` (save and load), then ``authors/`` (the authors'
   checkpoints converted).

Imports from outside the model: ``backend.errors``, ``backend.files`` and (for the tokenizer's folder)
``backend.weights``; never the raster or output side or the engine.
"""

from .build import MODEL_REGISTRY, build_model
from .checkpoint.io import load_model, save_checkpoint
from .config import ModelConfig, load_config
from .outputs import ImageEmbeddings, RefSegOutput

__all__ = ["MODEL_REGISTRY", "ImageEmbeddings", "ModelConfig", "RefSegOutput", "build_model", "load_config",
           "load_model", "save_checkpoint"]
