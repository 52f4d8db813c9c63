"""Weight files read safely: safetensors or ``weights_only`` pickles, checked before use.

- ``files``: the kind of a weight file, refusal of damaged or general-pickle files, safe readers.
- ``safetensors_header``: a safetensors header read and checked alone (length, bounded JSON, entries).
- ``state_check``: missing, unexpected and mis-shaped keys of a state dict, listed for an error message.
- ``base_weights``: the base (pre-trained) CLIP and SAM files: checks, SAM loading, SHA-256 records.

May import ``backend.errors`` and ``backend.files`` only (and torch): the builder, SAM 2.1's loader, the checkpoint
code and the authors' converter all read their files through it.
"""
