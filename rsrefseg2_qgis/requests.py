"""``SegmentRequest``: everything one query needs, as the dock (or a test) states it. No Qt objects inside."""

from __future__ import annotations

from dataclasses import dataclass

# View-mode refinements (backend.protocol.REFINE_STRATEGIES) with their labels, the default first.
REFINEMENTS = (("prompts", "Phrase prompts on each tile"), ("phrase", "Re-run the phrase on each tile"),
               ("box", "SAM box around the coarse mask"), ("none", "None: coarse mask only (fastest)"))

# Compute precisions of a load (backend.protocol.PRECISIONS) with their labels, the default first: Automatic = bf16
# on CUDA and on CPUs that compute it natively, fp32 elsewhere (the worker decides and says why).
PRECISIONS = (("auto", "Automatic"), ("fp32", "fp32"), ("bf16", "bf16"))

Extent = tuple[float, float, float, float]
# A request's resolution that lets the engine choose: the model's training scale (``backend.protocol``'s value).
RESOLUTION_AUTO = "auto"


def request_tile_grid(tile_size: int, overlap: int) -> tuple[int | None, int | None]:
    """A configured (tile size, overlap) as a request states it: tile size 0 (automatic) gives (None, None)."""
    return (tile_size, overlap) if tile_size else (None, None)


@dataclass(frozen=True)
class SegmentRequest:
    """One referring-segmentation query on one raster layer.

    Attributes:
        layer_id: the raster layer's id in the current project.
        phrases: the referring expressions (one result layer holds all, told apart by ``query``).
        extent: (xmin, ymin, xmax, ymax) in the layer CRS, or None for the whole layer.
        resolution: ground resolution in layer map units per pixel; None = native; ``RESOLUTION_AUTO`` = the
            model's scale (the checkpoint's training range; native when it records none).
        load_mode: "trained" (a checkpoint) or "zero-shot".
        checkpoint: checkpoint path, or None for a random-init model of ``config``.
        config: model config name used without a checkpoint ("tiny": untrained, for tests and a first look).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        precision: compute precision of the load: "auto", "fp32" or "bf16" (``PRECISIONS``).
        search: "view" (one object in the view) or "find-all" (tile the view, find every instance).
        refine: view-mode refinement: "prompts", "phrase", "box" or "none" (see ``backend.protocol.Segment``).
        tile_size, overlap: tile grid in pixels; None = the model's input size and an eighth of it.
        threshold: mask probability threshold in (0, 1).
        clip_weights, sam_weights: local base weights, or None.
        output_gpkg: a GeoPackage to save the result layer into, or None for a memory layer.
        all_matches: view mode keeps every object the phrase matches, not only the best one.
        resolution_note: why ``resolution`` is what it is, when the plugin chose it (layers it reads itself);
            "" leaves the explanation to the worker.
        probability: also have the worker write the phrases' probability over the view as a GeoTIFF
            (``Result.outputs.probability``, in the query's temp folder).
        min_area_m2: polygons of less ground area are dropped; None = the model's default (its smallest
            drawable object, for "every match" results; ``backend.protocol.Segment.min_area_m2``).
    """

    layer_id: str
    phrases: tuple[str, ...]
    extent: Extent | None = None
    resolution: float | str | None = RESOLUTION_AUTO
    load_mode: str = "trained"
    checkpoint: str | None = None
    config: str | None = "tiny"
    device: str = "auto"
    precision: str = PRECISIONS[0][0]
    search: str = "view"
    refine: str = REFINEMENTS[0][0]
    tile_size: int | None = None
    overlap: int | None = None
    threshold: float = 0.5
    clip_weights: str | None = None
    sam_weights: str | None = None
    output_gpkg: str | None = None
    all_matches: bool = False
    resolution_note: str = ""
    probability: bool = False
    min_area_m2: float | None = None

    def __post_init__(self) -> None:
        if not self.phrases or not all(phrase.strip() for phrase in self.phrases):
            raise ValueError("a SegmentRequest needs at least one non-empty phrase")

    @property
    def untrained(self) -> bool:
        """True when the model is randomly initialised (no checkpoint, not zero-shot)."""
        return self.checkpoint is None and self.load_mode == "trained"
