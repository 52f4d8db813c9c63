"""Tile grids with overlap and core stitching into a probability canvas that spills to disk when large.

Every view pixel belongs to exactly one tile's *core*: the tile minus half of each overlap it shares with a
neighbour (view edges are kept). Stitching writes only cores, so a per-pixel result does not depend on the
grid, and a model's border effects land in the trimmed overlap.

Large canvases are memory-mapped from a file in a folder named after the owning machine and process
(``<temp>/rsrefseg-canvas-<host>-<pid>``). On POSIX the file is unlinked as soon as it is mapped, so not even a
SIGKILL can leave it behind; where an open file cannot be unlinked (Windows) it is deleted on close, and the
folders of processes that died without closing are swept when the next canvas is created.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import BackendError
from backend.files.stale import owned_prefix, sweep

# Canvases above this many bytes live in a memory-mapped temp file instead of RAM.
IN_MEMORY_BYTES = 64 * 2**20
# Disk-backed canvases live in ``<temp folder>/<CANVAS_FOLDER_PREFIX><host>-<pid>``.
CANVAS_FOLDER_PREFIX = "rsrefseg-canvas-"


@dataclass(frozen=True)
class Tile:
    """One tile of a grid, in view pixels.

    Attributes:
        row_off, col_off: top-left corner.
        height, width: size (the view's size where the view is smaller than a tile).
        core: (row0, row1, col0, col1), half-open: the part of the tile this tile owns when stitching.
    """

    row_off: int
    col_off: int
    height: int
    width: int
    core: tuple[int, int, int, int]

    def intersects(self, box: tuple[int, int, int, int]) -> bool:
        """Whether the tile overlaps ``box`` = (row0, row1, col0, col1), half-open, in view pixels."""
        r0, r1, c0, c1 = box
        return (self.row_off < r1 and r0 < self.row_off + self.height
                and self.col_off < c1 and c0 < self.col_off + self.width)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis: every ``stride``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _cores(starts: list[int], size: int, length: int) -> list[tuple[int, int]]:
    """Half-open core interval of each tile along one axis: split every overlap at its middle."""
    bounds = [0] + [(nxt + prev + size) // 2 for prev, nxt in zip(starts[:-1], starts[1:], strict=True)] + [length]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def tile_grid(shape: tuple[int, int], tile_size: int, overlap: int) -> list[Tile]:
    """Cover a ``shape`` = (height, width) view with square tiles overlapping by ``overlap`` pixels.

    Args:
        shape: the view's (height, width).
        tile_size: tile side in pixels.
        overlap: pixels shared by neighbouring tiles (0 ≤ overlap < tile_size).

    Returns:
        Tiles in row-major order; their cores partition the view.
    """
    if tile_size < 1 or not 0 <= overlap < tile_size:
        raise ValueError(f"need tile_size ≥ 1 and 0 ≤ overlap < tile_size, got {tile_size}, {overlap}")
    height, width = shape
    size_r, size_c = min(tile_size, height), min(tile_size, width)
    rows = _starts(height, size_r, tile_size - overlap)
    cols = _starts(width, size_c, tile_size - overlap)
    row_cores, col_cores = _cores(rows, size_r, height), _cores(cols, size_c, width)
    return [Tile(r, c, size_r, size_c, (*rc, *cc))
            for r, rc in zip(rows, row_cores, strict=True) for c, cc in zip(cols, col_cores, strict=True)]


def canvas_folder(directory: str | None = None) -> Path:
    """This process's folder for disk-backed canvases (created), after sweeping those of dead processes.

    Args:
        directory: the parent folder (the system temp folder when None).
    """
    parent = Path(directory or tempfile.gettempdir())
    prefix = owned_prefix(CANVAS_FOLDER_PREFIX)
    sweep(parent, prefix)
    folder = parent / f"{prefix}{os.getpid()}"
    try:
        folder.mkdir()
    except FileExistsError:
        return folder
    atexit.register(_remove_if_empty, folder)
    return folder


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def reserve_space(handle: int, size: int, folder: Path) -> None:
    """Give the open file ``handle`` its ``size`` bytes of disk blocks now, before it is memory-mapped.

    A sparse file's blocks are allocated only when a page is first written; on a disk that filled up meanwhile
    that write is a SIGBUS, which kills the process with no word. Reserved up front (``posix_fallocate``), a full
    disk is an error here instead. The free space is checked first, because a file system may take all that is
    free before it fails to reserve the rest; where nothing can be reserved (no ``posix_fallocate``, or a file
    system without it) the file is only extended, and that check is all there is.

    Raises:
        BackendError: ``disk_full`` naming the folder and TMPDIR: too little free space, or a file larger than
            this process may write (its file size limit, RLIMIT_FSIZE).
    """
    need = f"{size / 2**30:.2f} GiB"
    free = shutil.disk_usage(folder).free
    if size > free:
        raise _scratch_full(need, folder, f"it has {free / 2**30:.2f} GiB free")
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(handle, 0, size)
            return
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # not "unsupported here"
                raise _write_refused(err, need, folder) from err
    try:  # sparse: the free-space check above stands for the reservation
        os.ftruncate(handle, size)
    except OSError as err:
        raise _write_refused(err, need, folder) from err


def _write_refused(err: OSError, need: str, folder: Path) -> BackendError:
    if err.errno == errno.EFBIG:
        return _scratch_full(need, folder, "this process may not write a file that large (its file size limit, "
                             "ulimit -f)", "raise the limit (ulimit -f unlimited), ")
    return _scratch_full(need, folder, err.strerror or str(err))


def _scratch_full(need: str, folder: Path, why: str, first_fix: str = "") -> BackendError:
    return BackendError("disk_full", f"a probability map of this run needs {need} in the temp folder {folder}, "
                        f"but {why}",
                        f"{first_fix}free space there, point TMPDIR to a folder on a larger disk (for the QGIS "
                        "plugin: before starting QGIS), or choose a coarser resolution or a smaller extent")


class ProbabilityCanvas:
    """An H×W float32 map assembled from tile cores; memory-mapped from a temp file when large.

    Use as a context manager: the temp file is deleted on exit (on POSIX it has no name from the start).
    """

    def __init__(self, *, shape: tuple[int, int], in_memory_bytes: int = IN_MEMORY_BYTES,
                 directory: str | None = None) -> None:
        """Args:
            shape: (height, width) of the map.
            in_memory_bytes: above this size the map lives in a memory-mapped temp file.
            directory: the parent of this process's canvas folder (the system temp folder when None).
        """
        self.shape = shape
        self._path: str | None = None
        self._on_disk = shape[0] * shape[1] * 4 > in_memory_bytes
        if self._on_disk:
            folder = canvas_folder(directory)
            handle, path = tempfile.mkstemp(suffix=".f32", dir=folder)
            try:
                reserve_space(handle, shape[0] * shape[1] * 4, folder)
            except BackendError:
                os.close(handle)
                os.remove(path)
                raise
            os.close(handle)
            self.array: np.ndarray = np.memmap(path, dtype=np.float32, mode="r+", shape=shape)
            if sys.platform == "win32":  # an open file cannot be unlinked there: deleted on close or swept
                self._path = path
            else:  # the mapping keeps the data; no name is left for a killed process to leak
                os.remove(path)
        else:
            self.array = np.zeros(shape, np.float32)

    @property
    def on_disk(self) -> bool:
        """Whether the map is memory-mapped from a file."""
        return self._on_disk

    def write_core(self, tile: Tile, probs: np.ndarray) -> None:
        """Write the core of a tile's result.

        Args:
            tile: the tile ``probs`` was computed on.
            probs: tile.height×tile.width float probabilities.
        """
        r0, r1, c0, c1 = tile.core
        self.array[r0:r1, c0:c1] = probs[r0 - tile.row_off:r1 - tile.row_off, c0 - tile.col_off:c1 - tile.col_off]

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (row_off, block) strips of at most ``rows`` rows, read one at a time."""
        for start in range(0, self.shape[0], rows):
            yield start, np.asarray(self.array[start:start + rows])

    def close(self) -> None:
        """Release the map and delete its temp file."""
        if self._on_disk and hasattr(self, "array"):
            del self.array
        if self._path is not None:
            # Windows refuses while another reference still maps the file: the next process's sweep removes it.
            with contextlib.suppress(PermissionError):
                os.remove(self._path)
            self._path = None

    def __enter__(self) -> ProbabilityCanvas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
