"""The plugin's settings dialog: worker interpreter, base weights, tiling and limits. Edits a ``PluginSettings``.

It also downloads the authors' trained models (``python -m backend weights download NAME`` in the worker's Python,
shown live in a ``ProcessDialog``); the dock and Processing then list them by name.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from qgis.gui import QgsDoubleSpinBox, QgsFileWidget, QgsSpinBox
from qgis.PyQt.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QPushButton, QWidget

from . import paths
from .i18n import tr
from .process_dialog import ProcessDialog, Step
from .settings import PRECISIONS, REFINEMENTS, PluginSettings

MIN_TILE = 64
# The authors' checkpoints the backend's weights manager knows (backend/weights/registry.py): name, dataset, and
# whether a SHA-256 is published (without one the download is accepted unverified, as the user asked for it).
AUTHORS_MODELS = (("rsrefseg2-rrsisd", "RRSIS-D", False), ("rsrefseg2-refsegrs", "RefSegRS", True))


def download_step(python: Path, name: str) -> Step:
    """``python -m backend weights download NAME`` (then converted by the backend) in the worker's environment."""
    verified = dict((n, v) for n, _, v in AUTHORS_MODELS)[name]
    return Step(tr("Download and convert {name} (about 3 GB)").format(name=name), str(python),
                ("-m", "backend", "weights", "download", name, *(() if verified else ("--trust-unverified",))),
                cwd=str(paths.backend_root()), pythonpath=str(paths.backend_root()))


def model_download_steps(python: Path, name: str) -> list[Step]:
    """What a ready backend needs to run an authors' model: the checkpoint (downloaded and converted) and SigLIP 2's
    Gemma tokenizer, both fetched by ``python``'s backend into the weights folder."""
    tokenizer = Step(tr("Download SigLIP 2's tokenizer"), str(python),
                     ("-m", "backend", "weights", "download", "siglip2-tokenizer"),
                     cwd=str(paths.backend_root()), pythonpath=str(paths.backend_root()))
    return [download_step(python, name), tokenizer]


class SettingsDialog(QDialog):
    """Shows ``settings``; ``edited()`` returns them with the user's changes (saving is the caller's job).

    Args:
        settings: the current settings.
        default_python: what an empty interpreter field means (shown as placeholder).
        parent: the parent widget.
    """

    def __init__(self, *, settings: PluginSettings, default_python: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(tr("RSRefSeg 2 settings"))
        self._settings = settings
        form = QFormLayout(self)
        self.python_widget = self._file(settings.python, tr(
            "An existing Python with PyTorch (works offline; the variable RSREFSEG2_PYTHON overrides it). "
            "Empty: {default}").format(default=default_python))
        self.python_widget.lineEdit().setPlaceholderText(default_python)
        form.addRow(tr("Worker Python"), self.python_widget)
        self.threads_spin = self._int(settings.threads, 0, 256, PluginSettings.threads)
        self.threads_spin.setSpecialValueText(tr("Automatic"))
        self.threads_spin.setToolTip(tr("PyTorch threads of the worker. Automatic: one on small or busy machines, "
                                        "else the physical cores (at most 8). Applies when the worker restarts."))
        form.addRow(tr("Torch threads (0 = automatic)"), self.threads_spin)
        self.precision_combo = QComboBox(self)
        for value, label in PRECISIONS:
            self.precision_combo.addItem(tr(label), value)
        self.precision_combo.setCurrentIndex(max(self.precision_combo.findData(settings.precision), 0))
        self.precision_combo.setToolTip(tr("Compute precision of the model. Automatic: bf16 on CUDA and on CPUs that "
                                           "compute it natively (about twice as fast, masks nearly the same), fp32 "
                                           "elsewhere. The model is loaded again with the next query."))
        form.addRow(tr("Precision"), self.precision_combo)
        self.clip_widget = self._file(settings.clip_weights, tr("open_clip checkpoint of the CLIP model"))
        form.addRow(tr("CLIP weights"), self.clip_widget)
        self.sam_widget = self._file(settings.sam_weights, tr("segment_anything .pth checkpoint"))
        form.addRow(tr("SAM weights"), self.sam_widget)
        self.refine_combo = QComboBox(self)
        for value, label in REFINEMENTS:
            self.refine_combo.addItem(tr(label), value)
        self.refine_combo.setCurrentIndex(max(self.refine_combo.findData(settings.refine), 0))
        self.refine_combo.setToolTip(tr("When the view is larger than the model's input, how the outline is "
                                        "refined at full resolution under the object"))
        form.addRow(tr("Refinement"), self.refine_combo)
        self.tile_spin = self._int(settings.tile_size, 0, 4096, PluginSettings.tile_size)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setSpecialValueText(tr("Auto (model input)"))
        form.addRow(tr("Tile size (px)"), self.tile_spin)
        self.overlap_spin = self._int(settings.overlap, 0, 1024, PluginSettings.overlap)
        form.addRow(tr("Tile overlap (px)"), self.overlap_spin)
        self.threshold_spin = QgsDoubleSpinBox(self)
        self.threshold_spin.setRange(0.01, 0.99)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(settings.threshold)
        self.threshold_spin.setClearValue(PluginSettings.threshold)
        form.addRow(tr("Mask threshold"), self.threshold_spin)
        self.megapixels_spin = self._int(settings.max_pixels // 1_000_000, 1, 4096,
                                         PluginSettings.max_pixels // 1_000_000)
        self.megapixels_spin.setSuffix(tr(" Mpx"))
        form.addRow(tr("Largest query window"), self.megapixels_spin)
        download_row = QHBoxLayout()
        self.authors_combo = QComboBox(self)
        for name, dataset, verified in AUTHORS_MODELS:
            note = "" if verified else tr(" (no published checksum)")
            self.authors_combo.addItem(tr("{dataset} — {name}{note}").format(dataset=dataset, name=name, note=note),
                                       name)
        self.download_button = QPushButton(tr("Download…"), self)
        self.download_button.setToolTip(tr("Download the authors' trained RSRefSeg 2 model into the weights folder "
                                           "and convert it (needs the network, ~3 GB of disk and ~4 GB of memory); "
                                           "then choose it under Model in the dock"))
        self.download_button.clicked.connect(self.download_authors_model)
        download_row.addWidget(self.authors_combo, 1)
        download_row.addWidget(self.download_button)
        form.addRow(tr("Authors' models"), download_row)
        self.download_dialog: ProcessDialog | None = None
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                   self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def download_action(self) -> Step:
        """The download the dialog would run: the chosen model, in the Python named in the dialog."""
        python = replace(self._settings, python=self.python_widget.filePath().strip()).worker_python()
        return download_step(python, self.authors_combo.currentData())

    def download_authors_model(self) -> ProcessDialog:
        """Run ``download_action()`` in a ``ProcessDialog`` (live output, cancellable; the download resumes)."""
        self.download_dialog = ProcessDialog(title=tr("Download a trained model"), steps=[self.download_action()],
                                             parent=self)
        self.download_dialog.show()
        self.download_dialog.start()
        return self.download_dialog

    def _file(self, path: str, tooltip: str) -> QgsFileWidget:
        widget = QgsFileWidget(self)
        widget.setFilePath(path)
        widget.setToolTip(tooltip)
        return widget

    def _int(self, value: int, low: int, high: int, default: int) -> QgsSpinBox:
        spin = QgsSpinBox(self)
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setClearValue(default)
        return spin

    def edited(self) -> PluginSettings:
        """The settings with the dialog's values (a tile size other than Auto is at least 64 px)."""
        tile = self.tile_spin.value() and max(self.tile_spin.value(), MIN_TILE)
        return replace(self._settings, python=self.python_widget.filePath().strip(), threads=self.threads_spin.value(),
                       precision=self.precision_combo.currentData(),
                       clip_weights=self.clip_widget.filePath().strip(),
                       sam_weights=self.sam_widget.filePath().strip(), refine=self.refine_combo.currentData(),
                       tile_size=tile, overlap=min(self.overlap_spin.value(), max(tile // 2 - 1, 0)),
                       threshold=round(self.threshold_spin.value(), 4),
                       max_pixels=self.megapixels_spin.value() * 1_000_000)
