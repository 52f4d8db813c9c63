"""Imported checkpoints (issue 13) are offered by name wherever a model is chosen: the dock and Processing.

A tiny checkpoint in the authors' layout is converted into ``rsrefseg2-rrsisd`` in a temporary weights folder
(``RSREFSEG2_WEIGHTS_DIR``); the real worker loads it when it is chosen.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from qgis.core import QgsApplication, QgsProcessingException

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.dock import SegmentDock
from rsrefseg2_qgis.model_catalog import imported_models, weights_dir
from rsrefseg2_qgis.processing.provider import RSRefSeg2Provider
from rsrefseg2_qgis.settings import PluginSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from authors_layout import authors_state  # noqa: E402 (the model tests' helper)
from authors_layout import tiny_config as authors_tiny_config  # noqa: E402

from backend.model.authors import import_authors  # noqa: E402
from backend.model.authors.location import imported_checkpoint  # noqa: E402
from backend.model.config import config_from_dict  # noqa: E402
from backend.weights.manager import weights_dir as backend_weights_dir  # noqa: E402

NAME = "rsrefseg2-rrsisd"
LABEL = "rsrefseg2-rrsisd — RRSIS-D, gIoU 69.06 / cIoU 79.66"
TOKEN_EMBEDDING = "clip_text_encoder.base_model.model.model.embeddings.token_embedding.weight"
ALGORITHM = "rsrefseg2:referringsegmentation"


@pytest.fixture(scope="module")
def authors_file(tmp_path_factory) -> tuple[Path, object]:
    """A tiny rrsisd.pth in the authors' layout whose text tower reads open_clip's BPE tokens, and its config."""
    folder = tmp_path_factory.mktemp("authors")
    data = authors_tiny_config().to_dict()
    data["clip"]["model_cfg"]["text_cfg"]["vocab_size"] = 49408  # the tokenizer a config without files gets
    state = authors_state(authors_tiny_config())
    state[TOKEN_EMBEDDING] = (0.3 * torch.randn(49408, state[TOKEN_EMBEDDING].shape[1])).bfloat16()
    torch.save({"state_dict": state}, folder / "rrsisd.pth")
    return folder / "rrsisd.pth", config_from_dict(data)


@pytest.fixture
def imported(authors_file, tmp_path, monkeypatch) -> Path:
    """The converted checkpoint ``rsrefseg2-rrsisd`` in a temporary weights folder."""
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path / "weights"))
    source, config = authors_file
    return import_authors(source, imported_checkpoint(NAME), config=config)


def test_the_plugin_finds_the_weights_folder_where_the_backend_does(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path))
    assert weights_dir() == backend_weights_dir() == tmp_path
    monkeypatch.delenv("RSREFSEG2_WEIGHTS_DIR")
    assert weights_dir() == backend_weights_dir()


def test_imported_models_are_named_with_their_dataset_and_score(imported) -> None:
    (model,) = imported_models()
    assert (model.name, model.path, model.dataset, model.label) == (NAME, imported, "RRSIS-D", LABEL)
    assert "third party" in model.tooltip and str(imported) in model.tooltip


def test_the_dock_lists_them_and_sends_the_chosen_path(imported, qgis_iface, raster_layer) -> None:
    dock = SegmentDock(iface=qgis_iface, settings=PluginSettings(device="cpu"))
    try:
        combo = dock.model_combo
        labels = [combo.itemText(i) for i in range(combo.count())]
        assert labels[0].startswith("Demo model") and LABEL in labels and labels[-1] == "Checkpoint file…"
        index = combo.findData(str(imported))
        combo.setCurrentIndex(index)
        combo.activated.emit(index)  # what a user's pick sends
        assert dock.load_spec().checkpoint == str(imported)
        dock.phrase_box.setEditText("the red building")
        assert dock.build_request().checkpoint == str(imported)
        combo.activated.emit(0)  # back to the demo model
        assert dock.load_spec().checkpoint == str(paths.demo_checkpoint()) and combo.currentIndex() == 0
        dock.checkpoint_widget.setFilePath(str(imported))  # a path typed or browsed selects its entry
        assert combo.currentIndex() == index
    finally:
        dock.unload()
        dock.deleteLater()


class _RecordingClient:
    """The shared worker client, remembering which checkpoint each load named."""

    def __init__(self, client) -> None:
        self._client = client
        self.loads: list[str | None] = []

    def load(self, **fields):
        self.loads.append(fields["checkpoint"])
        return self._client.load(**fields)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def test_processing_offers_them_and_runs_the_chosen_one(imported, qgis_processing, worker_client, sample_tif,
                                                        tmp_path) -> None:
    import processing

    recorder = _RecordingClient(worker_client)
    provider = RSRefSeg2Provider(client=lambda *args: recorder)
    QgsApplication.processingRegistry().addProvider(provider)
    try:
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(ALGORITHM)  # made now: lists now
        model = algorithm.parameterDefinition("MODEL")
        assert model.options()[1:] == [LABEL] and f"1 = {NAME}" in model.help()
        # The worker gets the path and opens it; it cannot build the test-only timm tower that this process
        # registered (tests/model/authors_layout.py), which proves it read this checkpoint's sidecar.
        with pytest.raises(QgsProcessingException, match=f"{NAME}.json describes a model that cannot be built"):
            processing.run(ALGORITHM, {"INPUT": str(sample_tif), "PHRASE": "the red building", "DEVICE": "cpu",
                                       "MODEL": 1, "EXTENT": "603000,603128,5339872,5340000 [EPSG:32633]",
                                       "OUTPUT": str(tmp_path / "out.gpkg")})
        assert recorder.loads == [str(imported)]
    finally:
        QgsApplication.processingRegistry().removeProvider(provider)


def test_the_settings_dialog_downloads_an_authors_model_in_the_workers_python(monkeypatch) -> None:
    from rsrefseg2_qgis.settings_dialog import SettingsDialog

    monkeypatch.delenv("RSREFSEG2_PYTHON", raising=False)  # it would name the worker's Python instead
    dialog = SettingsDialog(settings=PluginSettings(), default_python="/default/python")
    try:
        dialog.python_widget.setFilePath("/opt/env/bin/python")
        step = dialog.download_action()  # the first entry: RRSIS-D, whose SHA-256 is not published
        assert step.program == "/opt/env/bin/python" and step.cwd == str(paths.backend_root())
        assert step.arguments == ("-m", "backend", "weights", "download", NAME, "--trust-unverified")
        dialog.authors_combo.setCurrentIndex(dialog.authors_combo.findData("rsrefseg2-refsegrs"))
        assert dialog.download_action().arguments[-1] == "rsrefseg2-refsegrs"  # verified against its hash
    finally:
        dialog.deleteLater()
