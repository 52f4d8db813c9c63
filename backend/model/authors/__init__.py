"""The authors' released RSRefSeg 2 checkpoints (``KyanChen/RSRefSeg2``: ``rrsisd.pth``, ``refsegrs.pth``) imported
into our ``rsrefseg2-paper`` model: ``keymap`` (names), ``plan`` (what makes each tensor, LoRA merge, checks),
``stream_write`` (the output, one tensor at a time) and ``convert`` (``import_authors``).

The top of ``backend.model``: may import anything in it (it builds the model and writes our checkpoint format),
plus ``backend.errors`` and ``backend.files``."""

from .convert import AUTHORS_META, import_authors, meta_for, read_authors_state

__all__ = ["AUTHORS_META", "import_authors", "meta_for", "read_authors_state"]
