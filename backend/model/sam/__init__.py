"""SAM 1 (segment_anything) as the mask generator, and the mask head SAM 1 and SAM 2.1 share.

- ``mask_head``: ``PromptedMaskHead``: the prompter's prompts → SAM's decoder → mask logits (both families).
- ``head``: ``SamHead``: segment_anything's image encoder, prompt encoder and mask decoder, with LoRA.

May import ``backend.model.config`` and ``backend.model.lora``; never CLIP, the prompter or the architectures.
SAM 2.1 (Hiera) lives beside it in ``backend.model.sam2``.
"""
