"""The CLIP dual encoder (open_clip): dense patch features of the image, token and global text embeddings.

- ``encoder``: ``ClipDualEncoder`` over an open_clip model, with LoRA on the vision tower.
- ``towers``: dense features and token outputs from open_clip's towers (CLIP and SigLIP 2).
- ``gemma_tokenizer``: SigLIP 2's Gemma tokenizer from a local ``tokenizer.json``.

May import ``backend.model.config`` and ``backend.model.lora``, ``backend.errors`` and (for the tokenizer's
folder) ``backend.weights.manager``; never the prompter, SAM, the full architectures or the checkpoint code.
"""
