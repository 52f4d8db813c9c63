"""The prompters: CLIP's text-activated features → SAM's sparse prompt tokens and dense prompt map.

- ``v2``: RSRefSeg 2's cascaded second-order prompter.
- ``v1``: RSRefSeg's text-filter prompter (global and local text filters).
- ``blocks``: the building blocks of the cascaded prompter (attention, MLPs).
- ``dense_cosine``: the upsampled cosine map between text embeddings and dense image features.

May import ``backend.model.config``; never CLIP, SAM, the architectures or the checkpoint code.
"""
