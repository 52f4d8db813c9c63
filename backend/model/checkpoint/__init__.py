"""Our checkpoints: a safetensors file of the model's weights and a JSON sidecar describing it.

- ``io``: ``save_checkpoint`` / ``load_model`` (atomic writes, key and shape checks, base weights by hash).
- ``sidecar``: the sidecar's format, version and validation (config, base-weight records, training meta).
- ``stored_config``: the config stored in the weights file's own header, which the sidecar's must equal.

May import everything else in ``backend.model`` (it builds the model it loads) except ``authors``, plus
``backend.errors`` and ``backend.files``.
"""
