"""The authors' released RSRefSeg 2 checkpoints (``KyanChen/RSRefSeg2``: ``rrsisd.pth``, ``refsegrs.pth``) imported
into our ``rsrefseg2-paper`` model: ``keymap`` (names), ``plan`` (what makes each tensor, LoRA merge, checks),
``stream_write`` (the output, one tensor at a time) and ``convert`` (``import_authors``)."""

from .convert import AUTHORS_META, import_authors, meta_for, read_authors_state

__all__ = ["AUTHORS_META", "import_authors", "meta_for", "read_authors_state"]
