"""``python -m backend segment RASTER "phrase" … -o OUT.gpkg``: referring segmentation from the command line.

Everything that can be checked without the model is checked first, in order of cost: the phrases (and their
file), the output files (folder writable, free space, nothing in the way, overwrite rules), then the raster and
the requested area. Only then is torch imported and the model loaded, so a mistake costs a fraction of a second.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from backend.cli.arguments import number_list, read_phrases, resolution_value, square_metres
from backend.errors import BackendError, counted
from backend.output.preflight import check_output_targets
from backend.protocol import DEFAULT_REFINE, MIN_TILE_SIZE, REFINE_STRATEGIES, RESOLUTION_AUTO, WARNING_STAGE, Click

# The demo checkpoint shipped beside the backend (``<backend root>/resources/models``, in a checkout and in the
# plugin ZIP alike): what the dock answers with when no model is chosen, and so the CLI's default too.
DEMO_CHECKPOINT = Path(__file__).resolve().parents[2] / "resources" / "models" / "demo-synthetic.safetensors"

EPILOG = """\
examples:
  python -m backend segment scene.tif "the large white storage tank" -o tanks.gpkg
  python -m backend segment ortho.tif "all storage tanks" --find-all --resolution 0.5 -o tanks.gpkg
  python -m backend segment ortho.tif "the red-roofed building" --resolution native -o b.gpkg
  python -m backend segment ortho.tif "the red-roofed building" --extent=500100,4000000,500400,4000300 -o b.gpkg
  python -m backend segment ortho.tif "the red-roofed building" --exclude-point 500210,4000150 -o b.gpkg
  python -m backend segment ortho.tif "the red-roofed building" --probability b_probability.tif -o b.gpkg

The polygons are in the raster's CRS, with attributes query, score (mean probability, 0-1), area_m2,
model and checkpoint. A GeoJSON with the same polygons is written beside the GeoPackage.
Outside --find-all a phrase gets one polygon, its best match (--all-matches keeps every match), and the
raster is read at the ground resolution the model was trained at (--resolution auto); the line
"resolution: …" says which resolution was used and why.
Clicks (--point, --exclude-point, in the order given) and --box are in the raster's CRS, as QGIS shows
them; each click edits the answer the clicks before it left.
Coordinates that start with '-' need the '=' form: --extent=-73.99,40.70,-73.96,40.73
"""


def _click(include: bool):
    """An argparse type parsing ``X,Y`` into a ``protocol.Click``."""
    numbers = number_list(float, 2, "X,Y in the raster's CRS")

    def parse(text: str) -> Click:
        x, y = numbers(text)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise argparse.ArgumentTypeError(f"expected finite X,Y, got {text!r}")
        return Click(x=x, y=y, include=include)
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``segment`` options on ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("raster", help="the image to segment: any GDAL-readable raster with a CRS (GeoTIFF, VRT, …)")
    parser.add_argument("phrases", nargs="*", metavar="PHRASE",
                        help='what to find, in words, e.g. "the large white storage tank" (one layer attribute '
                             "'query' per phrase)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.gpkg",
                        help="the GeoPackage to write; OUT.geojson is written beside it")
    parser.add_argument("--phrases-file", metavar="FILE", help="a UTF-8 text file with one phrase per line")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    area = parser.add_argument_group("area and pixels")
    area.add_argument("--extent", type=number_list(float, 4, "xmin,ymin,xmax,ymax"), metavar="XMIN,YMIN,XMAX,YMAX",
                      help="segment only this rectangle, in the raster's CRS (default: the whole raster)")
    area.add_argument("--pixels", type=number_list(int, 4, "col,row,width,height"), metavar="COL,ROW,WIDTH,HEIGHT",
                      help="segment only this pixel window of the raster (instead of --extent)")
    area.add_argument("--resolution", type=resolution_value, default=RESOLUTION_AUTO, metavar="auto|native|UNITS",
                      help="ground size of one pixel in the raster's map units (e.g. 0.5 for 50 cm in a metric "
                           "CRS), the raster is resampled to it; 'native' keeps the raster's own; 'auto' reads "
                           "it at the ground resolution the model was trained at, when its checkpoint records "
                           "one (else native) (default: auto)")
    area.add_argument("--bands", type=number_list(int, 0, "1-based band numbers, e.g. 1,2,3"), metavar="R,G,B",
                      help="bands read as red, green, blue; one band is used as grey (default: the bands the "
                           "file declares as RGB, else the first three)")
    how = parser.add_argument_group("how to search")
    how.add_argument("--find-all", action="store_true",
                     help="find every instance tile by tile (e.g. 'all storage tanks' over a large raster); by "
                          "default the area is treated as one picture, as seen on screen")
    how.add_argument("--all-matches", action="store_true",
                     help="keep every object the phrase matches; by default a referring phrase gets its best "
                          "match only (and any that score about as well); --find-all always keeps all")
    how.add_argument("--refine", choices=REFINE_STRATEGIES, default=DEFAULT_REFINE,
                     help="when the area is larger than the model's input, how the result is refined at full "
                          "resolution on the tiles under it: 'prompts' reuses what the model made of the phrase "
                          "on the whole area, 'phrase' runs the phrase again on each tile, 'box' lets SAM follow "
                          f"the coarse outline, 'none' keeps the coarse mask (fastest) (default {DEFAULT_REFINE})")
    how.add_argument("--tile-size", type=int, metavar="PX",
                     help="tile side in pixels (default: the model's input size, so tiles are seen at full "
                          "resolution)")
    how.add_argument("--overlap", type=int, metavar="PX",
                     help="pixels shared by neighbouring tiles (default: an eighth of the tile)")
    how.add_argument("--threshold", type=float, default=0.5, help="probability above which a pixel is kept "
                                                                  "(default 0.5)")
    how.add_argument("--min-area", type=square_metres, metavar="M2",
                     help="drop polygons of less ground area than this many m² (0: keep all) (default: with "
                          "--find-all or --all-matches, the smallest object the model can draw, one cell of "
                          "its mask at its finest training resolution, e.g. 5.76 m² for the demo model; else "
                          "none)")
    how.add_argument("--min-pixels", type=int, default=16, metavar="PX",
                     help="drop polygons smaller than this many pixels of the area read (default 16)")
    how.add_argument("--simplify", type=float, default=0.0, metavar="UNITS",
                     help="simplify polygon outlines by this tolerance in map units (default: none)")
    clicks = parser.add_argument_group("correcting the answer (one phrase, not with --find-all)")
    clicks.add_argument("--point", type=_click(True), action="append", dest="clicks", default=[], metavar="X,Y",
                        help="a point on the object meant (repeatable), in the raster's CRS")
    clicks.add_argument("--exclude-point", type=_click(False), action="append", dest="clicks", metavar="X,Y",
                        help="a point on an object that is not meant (repeatable), in the raster's CRS")
    clicks.add_argument("--box", type=number_list(float, 4, "xmin,ymin,xmax,ymax"), metavar="XMIN,YMIN,XMAX,YMAX",
                        help="a rectangle the object lies in, in the raster's CRS")
    parser.add_argument("--probability", metavar="PATH.tif",
                        help="also write the answer's probability over the area as a GeoTIFF (float32 0-1, one "
                             "band per phrase, nodata -1 where the raster has none; same grid as the area read; "
                             "in --find-all mode the stitched tiles)")
    model = parser.add_argument_group("model")
    model.add_argument("--checkpoint", metavar="FILE", help="trained RSRefSeg checkpoint (.safetensors) "
                                                            "(default: the bundled demo model, synthetic scenes "
                                                            "only, as in the QGIS dock)")
    model.add_argument("--config", metavar="NAME", help="model config without a checkpoint, e.g. 'tiny' "
                                                        "(random weights: for testing only)")
    model.add_argument("--clip-weights", metavar="FILE", help="base CLIP weights (default: the weights cache)")
    model.add_argument("--sam-weights", metavar="FILE", help="base SAM weights (default: the weights cache)")
    model.add_argument("--mode", choices=("trained", "zero-shot"), default="trained",
                       help="'trained' uses the checkpoint's prompter; 'zero-shot' uses CLIP similarity only")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    model.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                       help="compute precision: 'auto' uses bf16 on CUDA and on CPUs with native bf16 "
                            "(AVX512-BF16 or AMX), fp32 elsewhere (default auto)")


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that cannot be written, before anything else is loaded (standard library only)."""
    if output.exists() and not output.is_file():
        raise BackendError("bad_request", f"{str(output)!r} is a folder or a device, not a GeoPackage file",
                           "give a file path for -o, e.g. -o result.gpkg")
    check_output_targets([str(output.with_suffix(ext)) for ext in (".geojson", ".gpkg")], overwrite)


def _check_raster(args: argparse.Namespace, window) -> None:
    """Open the raster and define the requested area without reading pixels (CRS, bands, window, size); the
    clicks and the box must lie in that area."""
    from backend.passes import view_clicks
    from backend.raster.reading import MAX_VIEW_PIXELS, MIN_VIEW_SIDE, make_view

    explicit = args.resolution not in (None, RESOLUTION_AUTO)
    view = make_view(args.raster, extent=window.extent if window else None,
                     pixels=window.pixels if window else None, resolution=args.resolution if explicit else None,
                     bands=args.bands, max_pixels=MAX_VIEW_PIXELS if explicit else math.inf,
                     min_side=MIN_VIEW_SIDE if explicit else 0)
    view_clicks(view, args.clicks, args.box)


def check_search_numbers(args: argparse.Namespace) -> None:
    """Refuse ``--resolution``, ``--threshold``, ``--simplify``, ``--min-pixels``, ``--tile-size`` and ``--overlap``
    values the engine cannot use (NaN, infinite, negative, out of range), before the raster is opened or the model
    loaded.

    Raises:
        BackendError: ``bad_request`` naming the option, with a usable value in the hint.
    """
    if isinstance(args.resolution, float) and not (math.isfinite(args.resolution) and args.resolution > 0):
        raise BackendError("bad_request", f"--resolution {args.resolution:g} is not a positive ground size",
                           "give the size of one pixel in the raster's map units, e.g. --resolution 0.5, or "
                           "'auto' or 'native'")
    if not (math.isfinite(args.threshold) and 0.0 < args.threshold < 1.0):
        raise BackendError("bad_request", f"--threshold {args.threshold:g} is not a probability strictly between "
                           "0 and 1", "give e.g. --threshold 0.5 (higher keeps fewer pixels)")
    if not (math.isfinite(args.simplify) and args.simplify >= 0):
        raise BackendError("bad_request", f"--simplify {args.simplify:g} is not a tolerance >= 0",
                           "give a distance in the raster's map units, e.g. --simplify 0.5, or 0 to keep the "
                           "outlines as traced")
    if args.min_pixels < 0:
        raise BackendError("bad_request", f"--min-pixels {args.min_pixels} is negative",
                           "give a number of pixels >= 0, e.g. --min-pixels 16 (0 keeps every polygon)")
    if args.tile_size is not None and args.tile_size < MIN_TILE_SIZE:
        raise BackendError("bad_request", f"--tile-size {args.tile_size} is smaller than {MIN_TILE_SIZE} px",
                           "leave it out to use the model's input size, or give e.g. --tile-size 512")
    if args.overlap is not None and not (0 <= args.overlap < (args.tile_size or math.inf) // 2):
        raise BackendError("bad_request", f"--overlap {args.overlap} is not between 0 and half the tile size",
                           "leave it out (an eighth of the tile), or give e.g. --overlap 64 with --tile-size 512")


def _check_clicks(args: argparse.Namespace, phrases: tuple[str, ...]) -> None:
    """Clicks and a box correct one phrase's answer in view mode; a box needs XMIN < XMAX and YMIN < YMAX."""
    if not args.clicks and args.box is None:
        return
    if len(phrases) != 1 or args.find_all:
        raise BackendError("bad_request", "--point, --exclude-point and --box correct one phrase's answer",
                           "give one phrase, without --find-all")
    if args.box is not None and not (args.box[0] < args.box[2] and args.box[1] < args.box[3]):
        raise BackendError("bad_request", f"--box {args.box} needs XMIN < XMAX and YMIN < YMAX",
                           "give the rectangle as XMIN,YMIN,XMAX,YMAX in the raster's CRS")


def _model_source(checkpoint: str | None, args: argparse.Namespace) -> str:
    """Which model answers, in words: "the bundled demo model (…)", a checkpoint file, or a config."""
    if checkpoint is not None and args.checkpoint is None:
        return f"the bundled demo model ({DEMO_CHECKPOINT.name}, synthetic scenes only)"
    if checkpoint is not None:
        return checkpoint
    return f"config {args.config or 'zero-shot'} ({'base weights' if args.mode == 'zero-shot' else 'random weights'})"


def run(args: argparse.Namespace) -> int:
    """Check the request, load the model, segment, write the outputs, print one summary line per phrase."""
    from backend.protocol import ProtocolError, Window

    check_search_numbers(args)
    phrases = read_phrases(args, missing_hint='add a phrase after the raster, e.g. "the large white storage tank"')
    if args.extent and args.pixels:
        raise BackendError("bad_request", "both --extent and --pixels were given", "give only one of them")
    _check_clicks(args, phrases)
    output = Path(args.output)
    _check_output(output, args.overwrite)
    if args.probability:
        if Path(args.probability).suffix.lower() not in (".tif", ".tiff"):
            raise BackendError("bad_request", f"--probability {args.probability!r} is not a .tif path",
                               "give a GeoTIFF path, e.g. --probability answer_probability.tif")
        check_output_targets([args.probability], args.overwrite)
    try:
        window = Window(extent=args.extent) if args.extent else Window(pixels=args.pixels) if args.pixels else None
    except ProtocolError as err:
        raise BackendError("bad_request", str(err), "give XMIN,YMIN,XMAX,YMAX with XMIN < XMAX and YMIN < YMAX, "
                                                    "or COL,ROW,WIDTH,HEIGHT with a positive size") from err
    _check_raster(args, window)

    checkpoint = args.checkpoint
    if checkpoint is None and args.config is None and args.mode == "trained" and DEMO_CHECKPOINT.is_file():
        checkpoint = str(DEMO_CHECKPOINT)  # as the dock does; "model: …" below says so

    from tqdm import tqdm

    from backend.engine import Engine, SegmentJob
    from backend.loading import describe, load_predictor

    predictor = load_predictor(checkpoint=checkpoint, config=args.config, clip_weights=args.clip_weights,
                               sam_weights=args.sam_weights, device=args.device, mode=args.mode,
                               precision=args.precision)
    job = SegmentJob(raster=args.raster, phrases=phrases, output_dir=str(output.parent or "."),
                     output_name=output.stem, window=window, resolution=args.resolution, bands=args.bands,
                     mode="find-all" if args.find_all else "view", refine=args.refine, tile_size=args.tile_size,
                     overlap=args.overlap,
                     threshold=args.threshold, min_area_px=args.min_pixels, min_area_m2=args.min_area,
                     simplify_tolerance=args.simplify,
                     overwrite=args.overwrite, all_matches=args.all_matches, clicks=tuple(args.clicks),
                     box=tuple(args.box) if args.box else None, probability_path=args.probability,
                     model_name=describe(predictor),
                     checkpoint_name=Path(checkpoint).name if checkpoint else f"none ({args.config})")
    print(f"model: {_model_source(checkpoint, args)} — {describe(predictor)}")
    with tqdm(total=100, file=sys.stderr, unit="%", bar_format="{desc:<12}{bar}| {n_fmt}% [{elapsed}]") as bar:
        def progress(fraction: float, stage: str, message: str) -> None:
            if stage == WARNING_STAGE:  # the engine's warnings, told before the model runs
                bar.write(f"warning: {message}", file=sys.stderr)
                return
            bar.set_description_str(stage)
            bar.update(max(0, round(fraction * 100) - bar.n))
        result = Engine(predictor).run(job, progress=progress)
    print(f"resolution: {result.resolution_note}")
    for summary in result.phrases:
        score = "-" if summary.score is None else f"{summary.score:.3f}"
        print(f"{summary.query!r}: {counted(summary.count, 'polygon')}, best score {score}, {summary.area_m2:.1f} m²")
    print(f"wrote {result.outputs['gpkg']} and {result.outputs['geojson']}")
    if "probability" in result.outputs:
        print(f"wrote {result.outputs['probability']}")
    return 0
