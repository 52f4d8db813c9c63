"""Build the installable QGIS plugin ZIP.

``python scripts/build_plugin_zip.py [--out dist/]`` writes ``rsrefseg2_qgis-<version>.zip`` with one top-level
folder ``rsrefseg2_qgis/`` holding ``metadata.txt`` (copied from the repository root, the single source), the
plugin code, the inference engine ``backend/`` (which the worker process runs) and ``resources/``. Tests, caches,
the training package and anything git ignores stay out. The archive is reproducible: fixed timestamps and
sorted entries, so the same tree gives the same bytes.
"""

from __future__ import annotations

import argparse
import configparser
import os
import posixpath
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "rsrefseg2_qgis"
# Folders copied into the plugin folder, as (source under ROOT, destination under PLUGIN/).
TREES = ((PLUGIN, ""), ("backend", "backend"), ("resources", "resources"))
TOP_FILES = ("metadata.txt", "LICENSE")
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", "tests"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".tmp", ".part"}
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def plugin_version(root: Path = ROOT) -> str:
    """The ``version`` field of metadata.txt."""
    parser = configparser.ConfigParser()
    parser.read(root / "metadata.txt", encoding="utf-8")
    return parser["general"]["version"]


def _tree_files(source: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix not in EXCLUDED_SUFFIXES and not name.startswith("."):
                yield path


def plugin_entries(root: Path = ROOT) -> list[tuple[str, Path]]:
    """(archive name, source file) for every file of the plugin, sorted by archive name."""
    entries = [(f"{PLUGIN}/{name}", root / name) for name in TOP_FILES if (root / name).is_file()]
    for source, destination in TREES:
        for path in _tree_files(root / source):
            relative = path.relative_to(root / source).as_posix()
            entries.append((posixpath.join(PLUGIN, destination, relative), path))
    names = [name for name, _ in entries]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise SystemExit(f"error: two sources for {sorted(duplicates)}")
    return sorted(entries)


def build_zip(out_dir: Path, root: Path = ROOT) -> Path:
    """Write the plugin ZIP into ``out_dir`` (atomically) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PLUGIN}-{plugin_version(root)}.zip"
    partial = target.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in plugin_entries(root):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            archive.writestr(info, path.read_bytes())
    os.replace(partial, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    path = build_zip(args.out)
    with zipfile.ZipFile(path) as archive:
        count = len(archive.namelist())
    print(f"wrote {path} ({count} files, {path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
