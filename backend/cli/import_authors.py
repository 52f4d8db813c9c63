"""``python -m backend weights import-authors FILE.pth [--name NAME]``: convert an authors' RSRefSeg 2 checkpoint.

The file (``rrsisd.pth`` or ``refsegrs.pth`` from the Hugging Face repo KyanChen/RSRefSeg2, downloaded by hand or by
``weights download``) is converted into ``<weights folder>/checkpoints/NAME.safetensors`` + ``.json``; afterwards
``--checkpoint NAME`` (or that path) uses it. The Gemma tokenizer files are needed too (``weights download
siglip2-tokenizer``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from backend.errors import BackendError

KNOWN = {"rrsisd.pth": "rsrefseg2-rrsisd", "refsegrs.pth": "rsrefseg2-refsegrs"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``import-authors`` options."""
    parser.add_argument("file", type=Path, help="the authors' checkpoint (rrsisd.pth or refsegrs.pth)")
    parser.add_argument("--name", help="the name to use it by (default: rsrefseg2-rrsisd for rrsisd.pth, "
                                       "rsrefseg2-refsegrs for refsegrs.pth, else the file's stem)")
    parser.add_argument("--config", default="rsrefseg2-paper",
                        help="the model config the weights are for (a bundled name or a JSON path; default "
                             "rsrefseg2-paper, SigLIP 2 so400m-512 + SAM 2.1 Hiera-L as the authors released)")
    parser.add_argument("--force", "--overwrite", action="store_true", dest="force",
                        help="replace a checkpoint of that name that is already there")


def default_name(file: Path) -> str:
    """The name a file is imported under when ``--name`` is not given."""
    return KNOWN.get(file.name, file.stem)


def convert(file: Path, name: str, *, config: str = "rsrefseg2-paper", force: bool = False,
            quiet: bool = False) -> Path:
    """Convert ``file`` into the imported checkpoint ``name``; returns the ``.safetensors`` path.

    Raises:
        BackendError: "output_exists" when the checkpoint exists and ``force`` is not given; "weights" when the
            file is not an authors' checkpoint that maps exactly (see ``backend.model.authors``).
    """
    from backend.model.authors import import_authors, meta_for
    from backend.model.authors.location import imported_checkpoint
    from backend.model.config import load_config

    dest = imported_checkpoint(name)
    try:
        model_config = load_config(config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendError("bad_request", f"cannot use model config {config!r}: {exc}",
                           "use rsrefseg2-paper (the default) or a model config JSON file") from exc
    if dest.exists() and not force:
        raise BackendError("output_exists", f"{dest} already exists", "add --force to convert again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        if not quiet and (done == total or done % 200 == 0):
            print(f"\rconverting {file.name}: {done}/{total} tensors", end="\n" if done == total else "",
                  file=sys.stderr, flush=True)

    import_authors(file, dest, config=model_config, meta=meta_for(name, file), progress=progress)
    if not quiet:
        print(f"{name}: converted in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return dest


def convert_installed(name: str, raw: Path, *, config: str, force: bool = False) -> Path:
    """After ``weights download``/``import`` of an authors' entry: its checkpoint, converted from ``raw`` unless it
    is already there (``force`` converts again). Returns the ``.safetensors`` path."""
    from backend.model.authors.location import imported_checkpoint

    dest = imported_checkpoint(name)
    if dest.is_file() and not force:
        print(f"{name}: already converted ({dest}); --force downloads and converts again", file=sys.stderr)
        return dest
    return convert(raw, name, config=config, force=True)


def run(args: argparse.Namespace) -> int:
    """Convert and print the checkpoint's path."""
    print(convert(args.file, args.name or default_name(args.file), config=args.config, force=args.force))
    return 0
