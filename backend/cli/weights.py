"""``python -m backend weights list|import|download|verify``: manage the base weights and tokenizer files.

Each file's status is shown: ``verified`` (matches its published SHA-256), ``unverified`` (none is published),
``mismatch`` (not the published file; never used as it), ``unchecked`` (not hashed yet: run ``weights verify``).
The authors' checkpoints (kind "authors") are converted right after their download or import; ``list`` shows both
the downloaded file and the converted checkpoint, and every other imported checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backend.cli import import_authors
from backend.errors import BackendError
from backend.protocol import WEIGHTS_DIR_ENV
from backend.weights import manager as weights
from backend.weights.registry import AuthorsEntry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``weights`` sub-subcommands to ``parser``."""
    parser.epilog = (f"The weights folder is {weights.weights_dir()} (set {WEIGHTS_DIR_ENV} to use another). "
                     f"Known names: {', '.join(weights.REGISTRY)}.")
    names = sorted(weights.REGISTRY)
    sub = parser.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="show the known weights, which are installed and whether they verify")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    imp = sub.add_parser("import", help="copy a local file or tokenizer folder into the weights folder (offline)")
    imp.add_argument("file", type=Path, help="the weights file (e.g. a sam_vit_b_01ec64.pth you downloaded), or a "
                                             "folder holding tokenizer.json (with --name siglip2-tokenizer)")
    imp.add_argument("--name", choices=names,
                     help="which known weights it is (checked against its SHA-256: a different file is kept but "
                          "recorded as a mismatch); default: recognise it by its hash, or keep its own file name")
    down = sub.add_parser("download", help="download known weights (resumes an interrupted download; a file "
                                           "already present is re-checked, not replaced)")
    down.add_argument("name", choices=names, metavar="NAME", help=f"one of: {', '.join(weights.REGISTRY)}")
    down.add_argument("--sha256", metavar="HEX", help="expected SHA-256 (for weights without a published one)")
    down.add_argument("--trust-unverified", action="store_true",
                      help="accept weights that have no known SHA-256 without verifying them")
    for action in (imp, down):
        action.add_argument("--force", "--overwrite", action="store_true", dest="force",
                            help="replace a file that is already in the weights folder")
    authors = sub.add_parser("import-authors", help="convert the authors' RSRefSeg 2 checkpoint (rrsisd.pth or "
                                                    "refsegrs.pth) into a checkpoint usable with --checkpoint NAME")
    import_authors.add_arguments(authors)
    check = sub.add_parser("verify", help="re-hash the installed files and compare them with the published SHA-256")
    check.add_argument("name", nargs="?", choices=names, metavar="NAME", help="only this one (default: all)")
    check.add_argument("--json", action="store_true", help="machine-readable output")


def _size(n: int | None) -> str:
    return f"{n / 1e6:.0f} MB" if n is not None else "?"


def _converted(name: str) -> Path | None:
    """The imported checkpoint of an authors' entry, None when not converted yet."""
    from backend.model.authors.location import imported_checkpoint  # lazily: the package imports torch

    path = imported_checkpoint(name)
    return path if path.is_file() else None


def _other_checkpoints() -> list[Path]:
    """Imported checkpoints (``weights import-authors --name``) that no registry entry names."""
    from backend.model.authors.location import checkpoints_dir

    return sorted(p for p in checkpoints_dir().glob("*.safetensors") if p.stem not in weights.REGISTRY)


def _row(presence: weights.Presence) -> dict[str, object]:
    entry = weights.REGISTRY[presence.name]
    row = {"name": entry.name, "kind": entry.kind, "arch": entry.arch, "status": presence.status,
           "path": str(presence.path) if presence.path else None,
           "files": [{"file": c.relpath, "status": c.status, "sha256": c.sha256, "published_sha256": c.expected}
                     for c in presence.files]}
    if isinstance(entry, AuthorsEntry):
        converted = _converted(entry.name)
        row |= {"dataset": entry.dataset, "reported": entry.reported,
                "checkpoint": str(converted) if converted else None}
    return row


def _print_table(states: dict[str, weights.Presence], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"folder": str(weights.weights_dir()), "weights": [_row(p) for p in states.values()],
                          "imported_checkpoints": [str(p) for p in _other_checkpoints()]}, indent=2))
        return
    print(f"weights folder: {weights.weights_dir()}")
    print(f"{'name':<24}{'kind':<10}{'arch':<28}{'size':>9}  {'status':<11}path")
    for presence in states.values():
        entry = weights.REGISTRY[presence.name]
        size = sum(f.size or 0 for f in entry.files) if all(f.size for f in entry.files) else None
        where = presence.path or ", ".join(c.relpath for c in presence.files if c.status != "missing") or "-"
        print(f"{entry.name:<24}{entry.kind:<10}{entry.arch:<28}{_size(size):>9}  {presence.status:<11}{where}")
        if isinstance(entry, AuthorsEntry):
            converted = _converted(entry.name)
            print(f"{'':<24}{entry.reported}; checkpoint: " + (f"{converted} (--checkpoint {entry.name})" if converted
                  else f"not converted (weights download {entry.name}, or weights import-authors FILE)"))
    for path in _other_checkpoints():
        print(f"{path.stem:<24}{'imported':<10}{'':<28}{'':>9}  {'':<11}{path}")
    if any(p.status == "unchecked" for p in states.values()):
        print("unchecked files were not hashed yet: run `python -m backend weights verify`")


def _report(name: str | None) -> None:
    """After an import or download: print the entry's status line, and a loud warning for a mismatch."""
    if name is None:
        return
    presence = weights.inventory()[name]
    if presence.status == "mismatch":
        bad = next(c for c in presence.files if c.status == "mismatch")
        print(f"WARNING: {bad.relpath} is NOT the published {name} (SHA-256 {bad.sha256}, published "
              f"{bad.expected}). It is recorded as a mismatch and will not be used as {name}.", file=sys.stderr)
    else:
        print(f"{name}: {presence.status}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; returns 0 (errors are raised as ``BackendError``)."""
    if args.weights_command == "list":
        _print_table(weights.inventory(), args.json)
        return 0
    if args.weights_command == "verify":
        states = weights.verify(args.name)
        _print_table(states, args.json)
        bad = [name for name, p in states.items() if p.status == "mismatch"]
        if bad:
            raise BackendError("weights", f"{', '.join(bad)}: not the published file (SHA-256 mismatch)",
                               f"replace with `python -m backend weights download {bad[0]} --force`")
        return 0
    if args.weights_command == "import-authors":
        return import_authors.run(args)
    if args.weights_command == "import":
        path = weights.import_file(args.file, args.name, force=args.force)
        name = args.name or next((n for n, e in weights.REGISTRY.items()
                                  if path == weights.weights_dir() / e.location), None)
        _report(name)
        print(_converted_if_authors(name, path, force=args.force))
        return 0
    path = weights.download(args.name, sha256=args.sha256, trust_unverified=args.trust_unverified, force=args.force)
    _report(args.name)
    print(_converted_if_authors(args.name, path, force=args.force))
    return 0


def _converted_if_authors(name: str | None, path: Path, *, force: bool) -> Path:
    """An authors' file just installed is converted (its checkpoint path is returned); any other ``path`` as is."""
    entry = weights.REGISTRY.get(name) if name else None
    if not isinstance(entry, AuthorsEntry) or weights.inventory()[name].status == "mismatch":
        return path
    return import_authors.convert_installed(name, path, config=entry.arch, force=force)
