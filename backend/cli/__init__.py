"""``python -m backend``: the command line without QGIS (``segment``, ``info``, ``weights``, ``batch``).

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``. Only the
chosen subcommand's module is imported, so ``weights`` and ``--help`` stay fast and work even where torch is
broken. A ``BackendError`` becomes two lines on stderr (what went wrong, what to do) and its exit status.
Arguments that are not valid UTF-8 (bytes a shell passed in another encoding) are refused before anything runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from backend.environment.packages import import_failure
from backend.errors import EXIT_CODES, BackendError
from backend.output.preflight import check_utf8

log = logging.getLogger(__name__)

# name → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("backend.cli.segment", "segment a raster with referring phrases into georeferenced polygons"),
    "info": ("backend.cli.info", "print versions, devices and installed weights (paste this into bug reports)"),
    "weights": ("backend.cli.weights", "list, import or download the base CLIP and SAM weights"),
    "batch": ("backend.cli.batch", "segment many rasters or a huge mosaic, here or on a Ray cluster (resumable)"),
}


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument not starting with '-'), if it is a known one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The argument parser; the full options are built only for the subcommand named in ``argv``."""
    parser = argparse.ArgumentParser(
        prog="python -m backend",
        description="RSRefSeg 2: referring segmentation of remote-sensing rasters (no QGIS needed).",
        epilog=f"exit status: 0 success; otherwise by error code: "
               f"{', '.join(f'{c} {s}' for c, s in EXIT_CODES.items())}",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(command)
    return parser


def _report(exc: BackendError) -> int:
    """Print the error as ``error:`` and ``hint:`` lines; return its exit status."""
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code


def _report_unforeseen(exc: BaseException) -> int:
    """One sanitised line for an unforeseen failure (the traceback with -v): a package that does not import is
    this Python lacking it (``environment``); anything else, one of our own modules included, is a bug."""
    lacking = import_failure(exc) if isinstance(exc, ImportError) else None
    if lacking is not None:
        return _report(lacking)
    log.info("unexpected failure", exc_info=exc)  # shown with -v
    return _report(BackendError("internal", f"{type(exc).__name__}: {exc}",
                                "this is a bug: run again with -v to see where it happened, and report it "
                                "with the output of `python -m backend info`"))


def _print_what_the_terminal_can() -> None:
    """Let stdout print characters its encoding lacks (a phrase or path with "é" on an ASCII or Latin-1 terminal,
    ``PYTHONIOENCODING=ascii``) as "?" instead of failing: the summary comes after the outputs were written, so
    a character it cannot show must not turn a finished run into an error. (stderr already escapes them.)"""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand and return the process exit status."""
    _print_what_the_terminal_can()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        for number, arg in enumerate(argv, 1):
            check_utf8(arg, f"argument {number}")
    except BackendError as exc:
        return _report(exc)
    try:
        args = build_parser(argv).parse_args(argv)  # imports the chosen subcommand's module
    except ImportError as exc:
        return _report_unforeseen(exc)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return importlib.import_module(COMMANDS[args.command][0]).run(args)
    except BackendError as exc:
        return _report(exc)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_CODES["cancelled"]
    except BrokenPipeError:  # the reader went away (`… | head`): what it wanted was printed; no error to report
        _silence_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 (unforeseen: one sanitised line; the traceback with -v)
        return _report_unforeseen(exc)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail again on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
