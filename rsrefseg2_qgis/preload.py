"""Load the chosen model in the background when the dock opens or the model changes, so that Enter costs only the
query. ``ModelPreloader`` runs the worker client's ``load`` in a ``QgsTask`` (never on the GUI thread) and reports
what the model is (its title and purpose from the checkpoint's metadata) back on the main thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .auto_resolution import ModelScale
from .client import BackendClient, WorkerError
from .i18n import tr


@dataclass(frozen=True)
class LoadSpec:
    """Which model a query needs (the ``load`` fields of a ``SegmentRequest``)."""

    checkpoint: str | None
    config: str | None
    device: str = "auto"
    mode: str = "trained"
    clip_weights: str | None = None
    sam_weights: str | None = None
    precision: str = "auto"

    def load(self, client: BackendClient, is_cancelled: Callable[[], bool] | None = None) -> Any:
        """``client.load`` with these fields. Returns the ``Loaded`` reply (cached by the client)."""
        return client.load(checkpoint=self.checkpoint, config=self.config, device=self.device, mode=self.mode,
                           clip_weights=self.clip_weights, sam_weights=self.sam_weights, precision=self.precision,
                           is_cancelled=is_cancelled)


@dataclass(frozen=True)
class ModelInfo:
    """What the worker says about a loaded model.

    Attributes:
        title: a short name ("Demo model"), or "" when the checkpoint has no metadata.
        description: what it is for ("synthetic scenes only"), or "".
        model: the worker's one-line description of the architecture.
        device: where it runs ("cpu", "cuda:0").
        scale: its training scale, for the automatic resolution of layers the plugin reads itself.
        precision: the compute precision the worker chose ("fp32", "bf16"), "" from a worker that does not say.
        precision_reason: why ("the CPU has avx512_bf16", "requested"), or "".
    """

    title: str
    description: str
    model: str
    device: str
    scale: ModelScale
    precision: str = ""
    precision_reason: str = ""

    @classmethod
    def from_reply(cls, loaded: Any) -> ModelInfo:
        """Read a ``Loaded`` reply (fields a worker does not send yet stay empty)."""
        gsd = getattr(loaded, "gsd_range_m", None)
        size = getattr(loaded, "input_size", None)
        return cls(title=getattr(loaded, "title", "") or "", description=getattr(loaded, "description", "") or "",
                   model=loaded.model, device=loaded.device,
                   scale=ModelScale(gsd_range_m=tuple(gsd) if gsd else None, input_size=size or None),
                   precision=getattr(loaded, "precision", "") or "",
                   precision_reason=getattr(loaded, "precision_reason", "") or "")

    def compute(self) -> str:
        """"bf16 (the CPU has avx512_bf16)": the precision and why, or "" when the worker did not say."""
        if not self.precision:
            return ""
        return f"{self.precision} ({self.precision_reason})" if self.precision_reason else self.precision

    def label(self, checkpoint: str | None) -> str:
        """"Demo model — synthetic scenes only"; without metadata the checkpoint's file name, never its path."""
        name = self.title or (Path(checkpoint).stem if checkpoint else self.model)
        return f"{name} — {self.description}" if self.description else name


class _PreloadTask(QgsTask):
    def __init__(self, *, spec: LoadSpec, client: BackendClient, on_done: Callable[[Any, str], None]) -> None:
        super().__init__(tr("Loading the RSRefSeg 2 model"), QgsTask.Flag.CanCancel)
        self.spec = spec
        self.client = client
        self.on_done = on_done
        self._reply: Any = None
        self._error = ""

    def run(self) -> bool:
        try:
            self._reply = self.spec.load(self.client, is_cancelled=self.isCanceled)
        except WorkerError as exc:
            self._error = "" if exc.code == "cancelled" else str(exc)
            return False
        return True

    def finished(self, result: bool) -> None:
        self.on_done(self._reply if result else None, self._error)


class ModelPreloader(QObject):
    """Loads models in the background, newest wish first.

    Args:
        client: returns the (current) worker client.

    Signals:
        loaded(LoadSpec, ModelInfo): the model is loaded and waits for queries.
        failed(LoadSpec, str): it could not be loaded (the text says why and what to do).
    """

    loaded = pyqtSignal(object, object)
    failed = pyqtSignal(object, str)

    def __init__(self, *, client: Callable[[], BackendClient]) -> None:
        super().__init__()
        self._client = client
        self._task: _PreloadTask | None = None
        self._wanted: LoadSpec | None = None

    @property
    def busy(self) -> bool:
        """True while a model loads."""
        return self._task is not None

    def preload(self, spec: LoadSpec) -> None:
        """Load ``spec``'s model in the background (after the one loading now, if any)."""
        self._wanted = spec
        if self._task is None:
            self._start()

    def cancel(self) -> None:
        """Stop loading (plugin unload)."""
        self._wanted = None
        if self._task is not None:
            self._task.cancel()

    def _start(self) -> None:
        spec, self._wanted = self._wanted, None
        if spec is None:
            return
        self._task = _PreloadTask(spec=spec, client=self._client(),
                                  on_done=lambda reply, error: self._done(spec, reply, error))
        QgsApplication.taskManager().addTask(self._task)

    def _done(self, spec: LoadSpec, reply: Any, error: str) -> None:
        self._task = None
        if reply is not None:
            self.loaded.emit(spec, ModelInfo.from_reply(reply))
        elif error:
            self.failed.emit(spec, error)
        self._start()
