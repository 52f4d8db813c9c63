"""``python -m backend batch INPUT… --phrase "…" -o FOLDER``: many rasters or a huge mosaic, here or on Ray.

Checks what it can before loading anything (phrases, inputs, the output folder, a manifest of another batch),
then runs ``backend.batch.run.run_batch``: in this process by default, on Ray Data with ``--ray``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.batch.plan import DEFAULT_PART_SIZE
from backend.cli.arguments import number_list, read_phrases, resolution_value, square_metres
from backend.cli.segment import check_search_numbers
from backend.environment.variables import choose_threads
from backend.errors import EXIT_CODES
from backend.protocol import DEFAULT_REFINE, REFINE_STRATEGIES, RESOLUTION_AUTO

EPILOG = f"""\
examples:
  python -m backend batch tiles/ --phrase "all storage tanks" --find-all --checkpoint model.safetensors -o out/
  python -m backend batch country.vrt --phrases-file phrases.txt --find-all -o out/ --ray local
  python -m backend batch a.tif b.tif --phrase "the large pond" -o out/ --ray ray://head:10001

Inputs are raster files, folders of rasters (.tif, .tiff, .vrt, .jp2, .img, not recursive) or VRT mosaics.
A raster wider or taller than --part-size pixels is cut into abutting parts of that size; objects cut by part
borders are joined in the merged output.

The output folder gets:
  parts/<part>.gpkg (+ .geojson)  each part's polygons
  merged.gpkg (+ .geojson)        every done part's polygons, objects cut by part borders joined
  manifest.json                   each part's input window, status, polygon count, model, time and error
  summary.txt                     what the last run did (also printed)
Rerunning the same command resumes: parts marked done are skipped; failed ones are tried again. A part that
fails is recorded with its error and the others go on; the exit status is then that of its error (as for
`segment`), 0 when every part is done.

Local (default): every part in this process with one loaded model and a progress bar; nothing extra needed.
--ray ADDRESS (or --ray local for a Ray started on this machine) runs the parts on Ray Data: model-holding
actors (one per GPU, num_gpus=1; without GPUs, CPU actors whose threads do not oversubscribe the CPUs), each
writing its parts' files; a killed actor is restarted and its parts retried up to 3 times. The cluster's
nodes must see the inputs, the checkpoint and the output folder at the same paths, and have this project's
dependencies and the cluster extra installed (pip install -e ".[cluster]").
Default part size: {DEFAULT_PART_SIZE} px.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``batch`` options on ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="raster files, folders of rasters, or VRT mosaics (each with a CRS)")
    parser.add_argument("-o", "--output", required=True, metavar="FOLDER",
                        help="the batch's output folder (created if missing; a rerun resumes there)")
    parser.add_argument("--phrase", dest="phrases", action="append", default=[], metavar="TEXT",
                        help='what to find, e.g. "all storage tanks" (repeat for several phrases)')
    parser.add_argument("--phrases-file", metavar="FILE", help="a UTF-8 text file with one phrase per line")
    parser.add_argument("--part-size", type=int, default=DEFAULT_PART_SIZE, metavar="PX",
                        help=f"side of a mosaic part in raster pixels (default {DEFAULT_PART_SIZE})")
    where = parser.add_argument_group("where it runs")
    where.add_argument("--ray", metavar="ADDRESS|local",
                       help="run on Ray Data: a cluster address (auto, ray://head:10001, …) or 'local' for a Ray "
                            "started on this machine (default: in this process, no Ray)")
    where.add_argument("--actors", type=int, metavar="N",
                       help="model-holding Ray actors (default: one per GPU; without GPUs, one per 4 spare CPUs)")
    where.add_argument("--threads", type=int, metavar="N",
                       help="torch CPU threads of a local run (default: automatic, see `python -m backend info`)")
    where.add_argument("--no-progress", action="store_true", help="no progress bars")
    how = parser.add_argument_group("how to search (as in `python -m backend segment`)")
    how.add_argument("--find-all", action="store_true",
                     help="find every instance tile by tile; by default each part is one picture")
    how.add_argument("--all-matches", action="store_true", help="keep every match of a phrase in view mode")
    how.add_argument("--resolution", type=resolution_value, default=RESOLUTION_AUTO, metavar="auto|native|UNITS",
                     help="ground size of a pixel in map units, 'native' or 'auto' (default: auto)")
    how.add_argument("--bands", type=number_list(int, 0, "1-based band numbers, e.g. 1,2,3"), metavar="R,G,B",
                     help="bands read as red, green, blue (default: the declared RGB, else the first three)")
    how.add_argument("--refine", choices=REFINE_STRATEGIES, default=DEFAULT_REFINE,
                     help=f"view-mode refinement at full resolution (default {DEFAULT_REFINE})")
    how.add_argument("--tile-size", type=int, metavar="PX", help="tile side (default: the model's input size)")
    how.add_argument("--overlap", type=int, metavar="PX", help="tile overlap (default: an eighth of the tile)")
    how.add_argument("--threshold", type=float, default=0.5, help="foreground probability (default 0.5)")
    how.add_argument("--min-area", type=square_metres, metavar="M2",
                     help="drop polygons of less ground area (m², 0: keep all; default: with --find-all or "
                          "--all-matches the smallest object the model can draw, as in segment)")
    how.add_argument("--min-pixels", type=int, default=16, metavar="PX",
                     help="drop polygons smaller than this many pixels (default 16)")
    how.add_argument("--simplify", type=float, default=0.0, metavar="UNITS", help="outline simplification")
    model = parser.add_argument_group("model")
    model.add_argument("--checkpoint", metavar="FILE", help="trained RSRefSeg checkpoint (.safetensors)")
    model.add_argument("--config", metavar="NAME", help="model config without a checkpoint (random weights: tests)")
    model.add_argument("--clip-weights", metavar="FILE", help="base CLIP weights (default: the weights cache)")
    model.add_argument("--sam-weights", metavar="FILE", help="base SAM weights (default: the weights cache)")
    model.add_argument("--mode", choices=("trained", "zero-shot"), default="trained", help="prompter mode")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    model.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="compute precision")


def run(args: argparse.Namespace) -> int:
    """Run or resume the batch and print the summary.

    Returns:
        0 when every part is done, else the exit status of the first failed part's error code.
    """
    from backend.batch.run import run_batch, summary_lines
    from backend.batch.work import BatchSettings

    check_search_numbers(args)
    if args.ray is None:  # a local run's torch threads: --threads, else RSREFSEG2_THREADS, checked before any work
        choose_threads(args.threads)
    phrases = read_phrases(args, missing_hint='add --phrase "all storage tanks" (repeat it for more) '
                                         'or --phrases-file FILE')
    # A checkpoint file by its absolute path: Ray's workers do not run in this folder. (A name is an imported one.)
    checkpoint = str(Path(args.checkpoint).resolve()) if args.checkpoint and Path(args.checkpoint).is_file() \
        else args.checkpoint
    settings = BatchSettings(phrases=phrases, mode="find-all" if args.find_all else "view",
                             resolution=args.resolution, bands=args.bands, refine=args.refine,
                             tile_size=args.tile_size, overlap=args.overlap, threshold=args.threshold,
                             min_area_px=args.min_pixels, min_area_m2=args.min_area, simplify_tolerance=args.simplify,
                             all_matches=args.all_matches, checkpoint=checkpoint, config=args.config,
                             clip_weights=args.clip_weights, sam_weights=args.sam_weights, device=args.device,
                             model_mode=args.mode, precision=args.precision, part_size=args.part_size)
    summary = run_batch(args.inputs, settings, args.output, ray=args.ray, actors=args.actors,
                        threads=args.threads, show_progress=not args.no_progress)
    print("\n".join(summary_lines(summary)))
    if not summary["failed"]:
        return 0
    first = next(iter(summary["failures"].values()))
    return EXIT_CODES.get(first.split(":", 1)[0], EXIT_CODES["internal"])
