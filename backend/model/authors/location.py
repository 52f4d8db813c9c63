"""Where imported checkpoints live: ``<weights folder>/checkpoints/<name>.safetensors`` (+ ``.json``), so
``--checkpoint rsrefseg2-rrsisd`` finds what ``weights import-authors`` or ``weights download`` wrote."""

from __future__ import annotations

import re
from pathlib import Path

from backend.errors import BackendError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def imported_checkpoint(name: str, directory: Path | None = None) -> Path:
    """The ``.safetensors`` path of the imported checkpoint ``name`` (it may not exist yet).

    Args:
        name: e.g. "rsrefseg2-rrsisd" (letters, digits, ``.``, ``_``, ``-``; no path separators).
        directory: the weights folder (default: ``backend.protocol.weights_dir()``).

    Raises:
        BackendError("bad_request"): a name that could escape the folder.
    """
    if not NAME.fullmatch(name) or name.endswith(".safetensors"):
        raise BackendError("bad_request", f"{name!r} is not a checkpoint name",
                           "use letters, digits, '.', '_' and '-', e.g. rsrefseg2-rrsisd")
    return checkpoints_dir(directory) / f"{name}.safetensors"


def checkpoints_dir(directory: Path | None = None) -> Path:
    """The folder of imported checkpoints inside the weights folder ``directory`` (default ``weights_dir()``)."""
    if directory is None:
        from backend.protocol import weights_dir  # the rule the plugin shares
        directory = weights_dir()
    return directory / "checkpoints"


def resolve_checkpoint(value: str) -> Path:
    """A ``--checkpoint`` value as a path: an existing file as given, else the imported checkpoint of that name
    when there is one, else the value as a path (whose absence the caller reports)."""
    path = Path(value).expanduser()
    if path.is_file() or not NAME.fullmatch(value) or value.endswith(".safetensors"):
        return path
    imported = imported_checkpoint(value)
    return imported if imported.is_file() else path
