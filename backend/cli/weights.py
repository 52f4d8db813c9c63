"""``python -m backend weights list|import FILE [--name NAME]|download NAME``: manage the base weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend import weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``weights`` sub-subcommands to ``parser``."""
    parser.epilog = (f"The weights folder is {weights.weights_dir()} (set {weights.ENV_VAR} to use another). "
                     f"Known names: {', '.join(weights.REGISTRY)}.")
    sub = parser.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="show the known weights and which are installed")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    imp = sub.add_parser("import", help="copy a local file into the weights folder (offline install)")
    imp.add_argument("file", type=Path, help="the weights file, e.g. a sam_vit_b_01ec64.pth you downloaded")
    imp.add_argument("--name", choices=sorted(weights.REGISTRY),
                     help="which known weights it is (verified against its SHA-256); default: recognise it "
                          "by its hash, or keep its own file name")
    down = sub.add_parser("download", help="download known weights (resumes an interrupted download)")
    down.add_argument("name", choices=sorted(weights.REGISTRY), metavar="NAME",
                      help=f"one of: {', '.join(weights.REGISTRY)}")
    down.add_argument("--sha256", metavar="HEX", help="expected SHA-256 (for weights without a published one)")
    down.add_argument("--trust-unverified", action="store_true",
                      help="accept weights that have no known SHA-256 without verifying them")


def _size(n: int | None) -> str:
    return f"{n / 1e6:.0f} MB" if n is not None else "?"


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; returns 0 (errors are raised as ``BackendError``)."""
    if args.weights_command == "list":
        present = weights.installed()
        if args.json:
            rows = [{"name": e.name, "kind": e.kind, "arch": e.arch, "size": e.size, "sha256": e.sha256,
                     "url": e.url, "path": str(present[e.name]) if present[e.name] else None}
                    for e in weights.REGISTRY.values()]
            print(json.dumps({"folder": str(weights.weights_dir()), "weights": rows}, indent=2))
            return 0
        print(f"weights folder: {weights.weights_dir()}")
        print(f"{'name':<24}{'kind':<6}{'arch':<28}{'size':>9}  {'checksum':<10}installed")
        for e in weights.REGISTRY.values():
            checksum = "published" if e.sha256 else "unknown"
            where = str(present[e.name]) if present[e.name] else "-"
            print(f"{e.name:<24}{e.kind:<6}{e.arch:<28}{_size(e.size):>9}  {checksum:<10}{where}")
        return 0
    if args.weights_command == "import":
        print(weights.import_file(args.file, args.name))
        return 0
    print(weights.download(args.name, sha256=args.sha256, trust_unverified=args.trust_unverified))
    return 0
