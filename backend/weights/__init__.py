"""The weights manager: where base and trained weights live on this machine, and how they get there.

- ``registry``: the known base weights and tokenizer files as data: source, published hash, file name.
- ``record``: the folder's record of each file: its SHA-256 and whether it matches the published one.
- ``fetch``: moving bytes: resumable HTTP downloads, hashing, hashed copies.
- ``manager``: the one cache folder: import, download, verify, and the paths the loaders ask for.

May import ``backend.errors``, ``backend.protocol`` and ``backend.files``; never the model or the engine. The
model asks it for paths (e.g. the SigLIP 2 tokenizer folder), never the other way round.
"""
