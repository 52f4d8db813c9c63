"""The full referring segmenters: CLIP → prompter → SAM, put together.

- ``base``: ``ReferringSegmenter``, the shared forward pass (encode images, encode text, prompt, decode).
- ``rsrefseg2``: RSRefSeg 2 (cascaded second-order prompter).
- ``rsrefseg``: RSRefSeg (text-filter prompter).
- ``zero_shot``: referring segmentation from base CLIP and SAM weights alone (no trained checkpoint).

May import the parts below it (``clip``, ``prompter``, ``sam``, ``ranker``, ``config``, ``outputs``, ``lora``);
never ``build``, the checkpoint code or the authors' converter above it.
"""
