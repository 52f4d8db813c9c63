"""What RSRefSeg 2 and RSRefSeg share: encode images once, decode any number of texts against them."""

from __future__ import annotations

import torch
from torch import nn

from ..clip.encoder import ClipDualEncoder
from ..config import ModelConfig
from ..outputs import ImageEmbeddings, RefSegOutput, mask_scores
from ..prompter.v2 import PrompterOutput
from ..sam.mask_head import PromptedMaskHead


class ReferringSegmenter(nn.Module):
    """CLIP dual encoder + a prompter + SAM, composed from injected parts (like segment_anything's ``Sam``).

    Subclasses define ``prompt`` (how the prompter is called) and which CLIP scalars train.
    """

    def __init__(self, *, clip_encoder: ClipDualEncoder, prompter: nn.Module, sam_head: PromptedMaskHead,
                 config: ModelConfig) -> None:
        """Args:
            clip_encoder: the CLIP dual encoder (frozen base, LoRA adapters).
            prompter: the architecture's prompter.
            sam_head: SAM's parts.
            config: the config the parts were built from (kept for checkpoints and predictors).
        """
        super().__init__()
        self.clip_encoder = clip_encoder
        self.prompter = prompter
        self.sam_head = sam_head
        self.config = config
        # The optional candidate ranker (``ranker.ComponentRanker``), trained after the model; set by the builder.
        self.ranker: nn.Module | None = None
        # Expected base weights {"clip"|"sam": {"file", "sha256"} | None}, set by the builder.
        self.base_weights: dict[str, dict[str, str] | None] = {"clip": None, "sam": None}

    @property
    def input_size(self) -> int:
        """Side S of the square model input."""
        return self.config.input_size

    def encode_images(self, images: torch.Tensor) -> ImageEmbeddings:
        """Args: images: B×3×S×S in [0, 1]. Returns: CLIP B×C×g×g and SAM B×Cp×gs×gs embeddings."""
        return ImageEmbeddings(clip=self.clip_encoder.encode_image_dense(images),
                               sam=self.sam_head.encode_image(images))

    def prompt(self, clip_map: torch.Tensor, texts: list[str]) -> PrompterOutput:
        """Run the text encoder and the prompter. Args: clip_map: B×C×g×g; texts: B strings."""
        raise NotImplementedError

    def decode(self, embeddings: ImageEmbeddings, texts: list[str]) -> RefSegOutput:
        """Segment each text on its image.

        Args:
            embeddings: from ``encode_images``: batch B matching ``texts``, or batch 1 shared by all texts.
            texts: B referring expressions.

        Returns:
            ``RefSegOutput`` with B×1×D×D mask logits.
        """
        texts = list(texts)
        clip_map = embeddings.clip
        if clip_map.shape[0] not in (1, len(texts)):
            raise ValueError(f"{clip_map.shape[0]} images for {len(texts)} texts; pass one image or one per text")
        if clip_map.shape[0] != len(texts):
            clip_map = clip_map.expand(len(texts), -1, -1, -1)
        prompts = self.prompt(clip_map, texts)
        mask_logits, iou = self.sam_head.decode(embeddings.sam, prompts.sparse, prompts.dense)
        return RefSegOutput(mask_logits=mask_logits, scores=mask_scores(mask_logits), clip_patch=clip_map,
                            q1=prompts.q1, q2=prompts.q2, iou_pred=iou, sparse_prompt=prompts.sparse,
                            dense_prompt=prompts.dense)

    def forward(self, images: torch.Tensor, texts: list[str], image_index: torch.Tensor | None = None
                ) -> RefSegOutput:
        """Args:
            images: B×3×S×S in [0, 1], already resized and padded (U×3×S×S with ``image_index``).
            texts: B strings.
            image_index: B int64, the image of each text, so U < B images are each encoded once; None pairs
                text i with image i.
        """
        embeddings = self.encode_images(images)
        if image_index is not None:
            embeddings = embeddings.select(image_index)
        return self.decode(embeddings, texts)

    def trainable_parameter_names(self) -> list[str]:
        """Exactly the parameters the method trains (those with ``requires_grad``)."""
        return [n for n, p in self.named_parameters() if p.requires_grad]
