"""The worker protocol: JSON lines between a client (the QGIS plugin, a test) and ``python -m backend.worker``.

One UTF-8 JSON object per line. Every message carries ``"type"``, ``"id"`` (the request id, a string) and
``"v"`` (``PROTOCOL_VERSION``). Requests flow client → worker, replies worker → client; a reply carries the id
of the request it answers. Pixels and results never travel in JSON, only paths of files.

This module is the contract shared with the plugin, so it imports nothing heavier than the standard library
(never torch, numpy or rasterio). Messages are frozen dataclasses; ``encode`` and ``decode`` convert them to and
from one line of JSON, and ``decode`` rejects anything the contract does not allow with a ``ProtocolError``
that names the offending type or field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

PROTOCOL_VERSION = 1

LOAD_MODES = ("trained", "zero-shot")
PRECISIONS = ("auto", "fp32", "bf16")  # compute precision of a load: auto = bf16 where native
SEGMENT_MODES = ("view", "find-all")
REFINE_STRATEGIES = ("prompts", "phrase", "box", "none")
DEFAULT_REFINE = "prompts"
# ``Segment.resolution`` value asking the engine to choose the resolution from the checkpoint's training range.
RESOLUTION_AUTO = "auto"
# ``Progress.stage`` of a warning for the user, e.g. a phrase cut to the text encoder's context.
WARNING_STAGE = "warning"
# Smallest tile side in pixels a run may use (the engine's tile grid refuses smaller ones).
MIN_TILE_SIZE = 16


# Where the backend keeps base weights, tokenizers and imported checkpoints: part of the contract because the
# plugin lists the imported checkpoints (their sidecars) without importing the backend.
WEIGHTS_DIR_ENV = "RSREFSEG2_WEIGHTS_DIR"


def weights_dir() -> Path:
    """The weights folder (not created): ``$RSREFSEG2_WEIGHTS_DIR`` or the platform's cache folder + ``rsrefseg2``."""
    override = os.environ.get(WEIGHTS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rsrefseg2"


class ProtocolError(ValueError):
    """A line that is not a valid message: bad JSON, unknown type, missing or mistyped field."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ProtocolError(message)


# ----------------------------------------------------------------------------------------- nested values
@dataclass(frozen=True)
class Window:
    """The part of the raster to segment: exactly one of ``extent`` or ``pixels``.

    Attributes:
        extent: (xmin, ymin, xmax, ymax) in the raster's CRS.
        pixels: (col_off, row_off, width, height) in raster pixels.
    """

    extent: tuple[float, float, float, float] | None = None
    pixels: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        _require((self.extent is None) != (self.pixels is None),
                 "window: give exactly one of 'extent' or 'pixels'")
        if self.extent is not None:
            xmin, ymin, xmax, ymax = self.extent
            _require(xmin < xmax and ymin < ymax, f"window.extent: need xmin < xmax and ymin < ymax, got {self.extent}")
        if self.pixels is not None:
            _require(self.pixels[2] > 0 and self.pixels[3] > 0, f"window.pixels: width and height must be > 0, "
                                                                f"got {self.pixels}")


@dataclass(frozen=True)
class Click:
    """A user's click on the map: (``x``, ``y``) in the raster's CRS; ``include`` True adds the object there to
    the answer, False removes it."""

    x: float
    y: float
    include: bool = True


@dataclass(frozen=True)
class Outputs:
    """Paths of the files a segment request produced (``gpkg`` is None when none was written; ``probability``
    is the probability GeoTIFF when one was asked for)."""

    geojson: str
    gpkg: str | None = None
    probability: str | None = None


@dataclass(frozen=True)
class PhraseSummary:
    """What one phrase found: number of polygons, best score (0..1), total area in m² (None if unknown)."""

    query: str
    count: int
    score: float | None
    area_m2: float | None


# ------------------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Ping:
    """Liveness check; answered by ``Pong``."""

    TYPE: ClassVar[str] = "ping"
    id: str


@dataclass(frozen=True)
class Load:
    """Load a model (and keep it loaded); answered by ``Loaded`` or ``Error``.

    ``config`` (a config name such as "tiny") is used only without ``checkpoint``: a randomly initialised model,
    for tests. Weight fields are paths or names known to the weights manager.
    """

    TYPE: ClassVar[str] = "load"
    id: str
    checkpoint: str | None = None
    config: str | None = None
    clip_weights: str | None = None
    sam_weights: str | None = None
    device: str = "auto"
    mode: str = "trained"
    precision: str = "auto"

    def __post_init__(self) -> None:
        _require(self.mode in LOAD_MODES, f"load.mode: expected one of {LOAD_MODES}, got {self.mode!r}")
        _require(self.precision in PRECISIONS,
                 f"load.precision: expected one of {PRECISIONS}, got {self.precision!r}")
        _require(self.checkpoint is not None or self.config is not None or self.mode == "zero-shot",
                 "load: give 'checkpoint' or 'config' (or mode 'zero-shot' with base weights)")


@dataclass(frozen=True)
class Segment:
    """Segment ``phrases`` on a raster; answered by ``Progress``… then one ``Result`` or ``Error``.

    Attributes:
        raster: path of a GDAL-readable raster with a CRS.
        phrases: the referring expressions, one output layer each.
        output_dir: the folder the worker writes into (and nowhere else).
        window: the part of the raster to use; None = the whole raster.
        resolution: map units per pixel; None = native; "auto" (``RESOLUTION_AUTO``, the default) = chosen
            from the checkpoint's training resolution range (native when the checkpoint records none).
        bands: 1-based band indices; None = the raster's RGB (or first three) bands.
        mode: "view" (the window is one picture) or "find-all" (tile the window, find every instance).
        refine: how view mode refines a window larger than the model input, at native resolution on the tiles
            under the coarse mask: "prompts" (the prompter's prompts from the whole view), "phrase" (the phrase
            run again on each tile), "box" (SAM box + coarse-mask prompt) or "none" (coarse mask only).
        tile_size, overlap: tile side and overlap in pixels; None = the model's input size and an eighth of it.
        threshold: probability above which a pixel belongs to the object.
        all_matches: view mode returns every connected component of a phrase's mask instead of the best one
            (and those scoring close to it).
        clicks: the user's include/exclude clicks on the phrase's answer, in order (view mode, one phrase);
            each edits the answer the clicks before it left.
        box: (xmin, ymin, xmax, ymax) in the raster's CRS: the object lies inside (view mode, one phrase).
        probability: also write each phrase's probability over the view as a GeoTIFF (``Outputs.probability``).
        min_area_m2: polygons of less ground area (m²) are dropped; None = the model's default (its smallest
            drawable object, for find-all and ``all_matches`` results); 0 = keep every polygon.
    """

    TYPE: ClassVar[str] = "segment"
    id: str
    raster: str
    phrases: tuple[str, ...]
    output_dir: str
    window: Window | None = None
    resolution: float | str | None = RESOLUTION_AUTO
    bands: tuple[int, ...] | None = None
    mode: str = "view"
    refine: str = DEFAULT_REFINE
    tile_size: int | None = None
    overlap: int | None = None
    threshold: float = 0.5
    all_matches: bool = False
    clicks: tuple[Click, ...] = ()
    box: tuple[float, float, float, float] | None = None
    probability: bool = False
    min_area_m2: float | None = None

    def __post_init__(self) -> None:
        if self.clicks or self.box is not None:
            _require(self.mode == "view" and len(self.phrases) == 1,
                     f"{self.TYPE}: clicks and a box refine one phrase in view mode")
        if self.box is not None:
            _require(self.box[0] < self.box[2] and self.box[1] < self.box[3],
                     f"{self.TYPE}.box: need xmin < xmax and ymin < ymax, got {self.box}")
        _require(self.mode in SEGMENT_MODES, f"segment.mode: expected one of {SEGMENT_MODES}, got {self.mode!r}")
        _require(self.refine in REFINE_STRATEGIES,
                 f"segment.refine: expected one of {REFINE_STRATEGIES}, got {self.refine!r}")
        _require(len(self.phrases) > 0, "segment.phrases: give at least one phrase")
        _require(self.tile_size is None or self.tile_size > 0, f"segment.tile_size: must be > 0 or null, "
                                                               f"got {self.tile_size}")
        _require(self.overlap is None or 0 <= self.overlap < (self.tile_size or math.inf),
                 f"segment: need 0 <= overlap < tile_size, got {self.tile_size}, {self.overlap}")
        _require(0.0 < self.threshold < 1.0, f"segment.threshold: must be in (0, 1), got {self.threshold}")
        _require(self.resolution is None or self.resolution == RESOLUTION_AUTO
                 or (isinstance(self.resolution, (int, float)) and math.isfinite(self.resolution)
                     and self.resolution > 0),
                 f"segment.resolution: must be > 0, {RESOLUTION_AUTO!r} or null, got {self.resolution!r}")
        _require(self.bands is None or all(b >= 1 for b in self.bands), "segment.bands: indices are 1-based")
        _require(self.min_area_m2 is None or (math.isfinite(self.min_area_m2) and self.min_area_m2 >= 0),
                 f"segment.min_area_m2: must be >= 0 or null, got {self.min_area_m2!r}")


@dataclass(frozen=True)
class Refine(Segment):
    """Segment's fields for one phrase with the user's ``clicks`` (and/or ``box``) on a view the worker has just
    segmented: decoded on the view's cached image features, never re-encoding it; answered like ``Segment``
    (an ``Error`` "not_cached" when the view's features are no longer cached: segment the phrase again).

    ``clicks`` holds every click so far, in order; the worker keeps the answers of the shorter click lists, so a
    new click costs one decode and dropping the last click (undo) none.
    """

    TYPE: ClassVar[str] = "refine"

    def __post_init__(self) -> None:
        _require(bool(self.clicks) or self.box is not None, "refine: give at least one click or a box")
        super().__post_init__()


@dataclass(frozen=True)
class Cancel:
    """Cancel the running or queued segment request ``target``; it ends with an ``Error`` "cancelled"."""

    TYPE: ClassVar[str] = "cancel"
    id: str
    target: str


@dataclass(frozen=True)
class Shutdown:
    """Ask the worker to exit; answered by ``Bye``, then the worker exits with status 0."""

    TYPE: ClassVar[str] = "shutdown"
    id: str


# -------------------------------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class Pong:
    TYPE: ClassVar[str] = "pong"
    id: str
    protocol: int
    backend_version: str


@dataclass(frozen=True)
class Loaded:
    """The model is loaded: ``model`` describes it, ``device`` is where it runs (e.g. "cpu", "cuda:0").

    ``title``, ``description`` and ``gsd_range_m`` come from the checkpoint's own metadata (empty / None when it
    has none): a short name to show, what the model is for, and the ground metres per pixel at the model input it
    was trained at, so a client can choose an automatic resolution for layers without a file; ``input_size`` is the
    model's input side in pixels (the view side an automatic resolution divides by); ``precision`` is the compute
    precision chosen ("fp32" or "bf16") and ``precision_reason`` why.
    """

    TYPE: ClassVar[str] = "loaded"
    id: str
    model: str
    device: str
    title: str = ""
    description: str = ""
    gsd_range_m: tuple[float, float] | None = None
    input_size: int | None = None
    precision: str = ""
    precision_reason: str = ""


@dataclass(frozen=True)
class Progress:
    """Progress of a segment request: ``fraction`` in [0, 1], a short ``stage`` and a human ``message``.

    A progress with stage ``WARNING_STAGE`` carries a warning the user should see (e.g. a phrase longer than the
    text encoder reads); the request goes on.
    """

    TYPE: ClassVar[str] = "progress"
    id: str
    fraction: float
    stage: str
    message: str = ""

    def __post_init__(self) -> None:
        _require(0.0 <= self.fraction <= 1.0, f"progress.fraction: must be in [0, 1], got {self.fraction}")


@dataclass(frozen=True)
class Result:
    """A finished segment request: output files, one summary per phrase, the CRS (WKT), seconds per stage,
    the resolution the view was read at (map units per pixel), a one-line note saying why, and ``warnings``:
    what the user should know about the answer, one sentence each (a phrase longer than the model reads, a view
    read finer than the raster or far outside the model's training resolution), also sent as ``Progress``
    with stage ``WARNING_STAGE`` before the model ran."""

    TYPE: ClassVar[str] = "result"
    id: str
    outputs: Outputs
    phrases: tuple[PhraseSummary, ...]
    crs: str
    timings: dict[str, float] = field(default_factory=dict)
    resolution_used: float | None = None
    resolution_note: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Error:
    """A failed request: ``code`` (see ``backend.errors.EXIT_CODES``), what went wrong and what to do."""

    TYPE: ClassVar[str] = "error"
    id: str
    code: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class Bye:
    TYPE: ClassVar[str] = "bye"
    id: str


Request = Ping | Load | Segment | Refine | Cancel | Shutdown
Reply = Pong | Loaded | Progress | Result | Error | Bye
Message = Request | Reply

REQUEST_TYPES: dict[str, type] = {cls.TYPE: cls for cls in (Ping, Load, Segment, Refine, Cancel, Shutdown)}
REPLY_TYPES: dict[str, type] = {cls.TYPE: cls for cls in (Pong, Loaded, Progress, Result, Error, Bye)}
MESSAGE_TYPES: dict[str, type] = {**REQUEST_TYPES, **REPLY_TYPES}


# ---------------------------------------------------------------------------------------- encode / decode
def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (isinstance(value, Window) and getattr(value, f.name) is None)}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def encode(message: Message) -> str:
    """One JSON line (without the newline) for ``message``.

    Args:
        message: any request or reply dataclass of this module.

    Returns:
        The compact JSON text, with ``type``, ``id`` and ``v`` first.
    """
    if type(message) not in MESSAGE_TYPES.values():
        raise ProtocolError(f"cannot encode {type(message).__name__}: not a protocol message")
    body = _to_json(message)
    payload = {"type": message.TYPE, "id": body.pop("id"), "v": PROTOCOL_VERSION, **body}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` (parsed JSON) against the type ``hint`` and convert lists to tuples, dicts to dataclasses."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            _require(type(None) in options, f"{where}: must not be null")
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], where)
        for option in inner:  # e.g. float | str: the first type the value fits
            with contextlib.suppress(ProtocolError):
                return _convert(value, option, where)
        raise ProtocolError(f"{where}: expected {' or '.join(getattr(o, '__name__', str(o)) for o in inner)}")
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        _require(isinstance(value, dict), f"{where}: expected an object")
        return _build(hint, value, where)
    if origin is tuple:
        _require(isinstance(value, list), f"{where}: expected a list")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        _require(len(value) == len(args), f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        _require(isinstance(value, dict), f"{where}: expected an object")
        _, value_hint = typing.get_args(hint)
        return {str(k): _convert(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        _require(isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: expected a number")
        _require(not isinstance(value, int) or abs(value) <= MAX_JSON_INT, f"{where}: {_digits(value)}")
        _require(math.isfinite(value), f"{where}: must be finite")
        return float(value)
    if hint is bool:
        _require(isinstance(value, bool), f"{where}: expected true or false")
        return value
    if hint is int:
        _require(isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer")
        _require(abs(value) <= MAX_JSON_INT, f"{where}: {_digits(value)}")
        return value
    if hint is str:
        _require(isinstance(value, str), f"{where}: expected a string")
        _require(_is_unicode(value), f"{where}: not valid Unicode text (a lone surrogate such as a \\ud800 escape, "
                                     "e.g. from undecodable bytes in a file name or shell argument)")
        _require("\x00" not in value, f"{where}: contains a NUL character (\\u0000), which no phrase or path may hold")
        return value
    raise ProtocolError(f"{where}: unsupported field type {hint!r}")


# Integers beyond ±2⁵³ are not exact in JSON readers (and no count, size or coordinate of ours comes near it).
MAX_JSON_INT = 2**53
# Longest integer literal a line may hold: Python refuses to convert more than 4300 digits (and converting is
# quadratic in the digits), so longer ones are refused before ``json.loads`` tries.
MAX_INT_DIGITS = 400


def _digits(value: int) -> str:
    return f"the integer {str(value)[:12]}… ({len(str(value))} digits) is too large (limit ±2^53)"


def _is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (JSON's \\ud800-style escapes can produce lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """The resolved field annotations of a message dataclass (cached: resolving them is the slow part)."""
    return typing.get_type_hints(cls)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            _require(has_default, f"{where}: missing field {f.name!r}")
            continue
        kwargs[f.name] = _convert(data[f.name], hints[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


def _parse(line: str) -> Any:
    """``json.loads``, with every way a line can fail to parse as a ``ProtocolError``."""
    try:
        return json.loads(line, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not valid JSON: {exc.msg} at column {exc.colno}") from exc
    except RecursionError as exc:  # the parser recurses per level: a hostile line can exhaust the stack
        raise ProtocolError("not a usable message: JSON nested too deeply") from exc


def _bounded_int(text: str) -> int:
    """``json.loads``'s integer parser, refusing literals of more than ``MAX_INT_DIGITS`` digits (a 5000-digit
    number raised a ValueError that killed the worker with no reply)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(f"an integer of {len(text.lstrip('-'))} digits is too large (limit ±2^53)")
    return int(text)


def decode(line: str) -> Message:
    """Parse one line into a message dataclass.

    Args:
        line: one JSON object (a trailing newline is allowed). Unknown extra fields are ignored, so newer
            clients can add optional fields without breaking older workers.

    Returns:
        The request or reply.

    Raises:
        ProtocolError: not JSON, not an object, wrong version, unknown type, or a missing/mistyped field.
    """
    data = _parse(line)
    _require(isinstance(data, dict), "a message must be a JSON object")
    kind = data.get("type")
    _require(isinstance(kind, str), "missing field 'type'")
    cls = MESSAGE_TYPES.get(kind)
    _require(cls is not None, f"unknown message type {kind!r}; known: {sorted(MESSAGE_TYPES)}")
    _require("v" in data, f"{kind}: missing field 'v'")
    _require(data["v"] == PROTOCOL_VERSION,
             f"{kind}: protocol version {data['v']!r} is not supported (this side speaks {PROTOCOL_VERSION})")
    _require("id" in data, f"{kind}: missing field 'id'")
    fields = {k: v for k, v in data.items() if k not in ("type", "v")}
    return _build(cls, fields, kind)


def request_id(line: str) -> str:
    """The ``id`` of a line that may not decode, so an error reply can still name its request ("" if none)."""
    try:
        data = _parse(line)
    except ProtocolError:
        return ""
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and _is_unicode(value) else ""
