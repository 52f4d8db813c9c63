"""Settings round-trip through QgsSettings; backend setup steps; the live process dialog on real commands."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QCoreApplication, QEventLoop, QTimer

from rsrefseg2_qgis import paths
from rsrefseg2_qgis.process_dialog import ProcessDialog, Step, diagnostics_step
from rsrefseg2_qgis.settings import PREFIX, PluginSettings, model_choice
from rsrefseg2_qgis.setup_backend import CPU_INDEX, CUDA_INDEX_WINDOWS, explain_pip_failure, setup_steps

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store() -> QgsSettings:
    settings = QgsSettings("rsrefseg2-tests", "settings-test")
    settings.remove(PREFIX.rstrip("/"))
    yield settings
    settings.remove(PREFIX.rstrip("/"))


def test_settings_round_trip_and_history(store: QgsSettings) -> None:
    assert PluginSettings.load(store) == PluginSettings()
    saved = PluginSettings(device="cuda:1", tile_size=384, threshold=0.4).with_phrase("a").with_phrase("b")
    saved = saved.with_phrase("a")
    saved.save(store)
    loaded = PluginSettings.load(store)
    assert loaded == saved and loaded.history == ("a", "b")
    assert store.value(PREFIX + "device") == "cuda:1"


def test_unparsable_setting_keeps_the_default(store: QgsSettings) -> None:
    store.setValue(PREFIX + "tile_size", "large")
    store.setValue(PREFIX + "refine", "sharpen")  # not a refinement the engine knows
    loaded = PluginSettings.load(store)
    assert loaded.tile_size == PluginSettings().tile_size and loaded.refine == PluginSettings().refine == "prompts"


def test_rsrefseg2_python_overrides_the_configured_worker_python(monkeypatch) -> None:
    settings = PluginSettings(python="/configured/bin/python")
    monkeypatch.delenv("RSREFSEG2_PYTHON", raising=False)
    assert settings.worker_python() == Path("/configured/bin/python")
    monkeypatch.setenv("RSREFSEG2_PYTHON", "/headless/bin/python")
    assert settings.worker_python() == Path("/headless/bin/python")


def test_model_choice_defaults_to_the_bundled_demo_checkpoint() -> None:
    demo = paths.demo_checkpoint()
    assert demo is not None, f"resources/models/{paths.DEMO_CHECKPOINT} is shipped with the plugin"
    default = model_choice("", "trained")
    assert default.checkpoint == str(demo) and default.config is None and not default.untrained
    zero_shot = model_choice("", "zero-shot")  # no base weights configured: the tiny architecture, untrained
    assert zero_shot.checkpoint is None and zero_shot.config == "tiny" and zero_shot.untrained
    chosen = model_choice("/models/x.safetensors", "trained")
    assert chosen.checkpoint == "/models/x.safetensors" and not chosen.untrained


def _torch_step(steps: list[Step]) -> Step:
    return next(step for step in steps if "torch==2.14.1" in step.arguments)


def test_setup_steps_pick_the_torch_build(tmp_path: Path) -> None:
    log = tmp_path / "setup.log"
    cpu = setup_steps(venv_dir=tmp_path / "venv", gpu=False, platform="linux", python="/usr/bin/python3",
                      log_file=log)
    staged = tmp_path / "venv.partial"  # built apart; moved to venv only once it works
    assert cpu[1].arguments == ("-m", "venv", str(staged))
    torch_step = _torch_step(cpu)
    assert torch_step.program == str(paths.venv_python(staged))
    assert CPU_INDEX in torch_step.arguments
    assert torch_step.arguments[torch_step.arguments.index("--retries") + 1] == "0"  # no minutes of retries
    assert torch_step.arguments[torch_step.arguments.index("--log") + 1] == str(log)
    gpu_linux = _torch_step(setup_steps(venv_dir=tmp_path, gpu=True, platform="linux", python="python3",
                                        log_file=log))
    assert "--index-url" not in gpu_linux.arguments  # PyPI's Linux wheels are the CUDA build
    gpu_windows = _torch_step(setup_steps(venv_dir=tmp_path, gpu=True, platform="win32", python="python",
                                          log_file=log))
    assert CUDA_INDEX_WINDOWS in gpu_windows.arguments
    requirements_step = next(step for step in cpu if "-r" in step.arguments)
    requirements = Path(requirements_step.arguments[requirements_step.arguments.index("-r") + 1])
    assert requirements == paths.backend_root() / "backend" / "requirements.txt" and requirements.is_file()


def test_the_backend_requirements_are_the_installed_package_dependencies() -> None:
    """One list: pyproject.toml reads backend/requirements.txt, which "Set up backend…" installs."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    def key(text: str) -> tuple[str, frozenset[str]]:
        requirement = Requirement(text)
        return requirement.name, frozenset(str(s) for s in requirement.specifier)

    listed = {key(line) for line in (paths.backend_root() / "backend" / "requirements.txt").read_text(
        encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")}
    installed = {key(r) for r in requires("rsrefseg2-qgis") if "extra ==" not in r}
    assert ("rasterio", frozenset({">=1.3"})) in listed and installed == listed


def _wait_done(dialog: ProcessDialog, seconds: float = 60) -> bool | None:
    loop = QEventLoop()
    dialog.completed.connect(lambda _ok: loop.quit())
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    if dialog.succeeded is None:
        loop.exec()
    return dialog.succeeded


def test_process_dialog_runs_steps_in_order_and_stops_at_a_failure() -> None:
    steps = [Step("one", sys.executable, ("-c", "print('first step')")),
             Step("two", sys.executable, ("-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)")),
             Step("three", sys.executable, ("-c", "print('never')"))]
    dialog = ProcessDialog(title="t", steps=steps)
    dialog.start()
    assert _wait_done(dialog) is False
    text = dialog.output.toPlainText()
    assert "first step" in text and "boom" in text and "exit status 3" in text and "never" not in text
    dialog.deleteLater()


def test_process_dialog_cancel_kills_the_running_step() -> None:
    dialog = ProcessDialog(title="t", steps=[Step("sleep", sys.executable, ("-c", "import time; time.sleep(60)"))])
    dialog.start()
    QCoreApplication.processEvents()
    dialog.cancel()
    assert dialog.succeeded is False
    assert dialog.process.state() == dialog.process.ProcessState.NotRunning
    dialog.deleteLater()


def test_a_failed_pip_step_shows_its_first_error_and_the_log(tmp_path: Path) -> None:
    """Real pip, no index: pip's last line is a consequence; the first ERROR line is the cause."""
    log = tmp_path / "logs" / "setup.log"
    (tmp_path / "no-wheels").mkdir()
    step = Step("pip", sys.executable, ("-m", "pip", "install", "--no-index", "--find-links",
                                        str(tmp_path / "no-wheels"), "--retries", "0", "--log", str(log),
                                        "--target", str(tmp_path / "t"), "rsrefseg2-no-such-package==1.0"),
                explain=explain_pip_failure(log))
    dialog = ProcessDialog(title="t", steps=[step])
    dialog.start()
    assert _wait_done(dialog) is False
    assert dialog.failure.startswith("pip failed: ERROR: Could not find a version that satisfies the requirement "
                                     "rsrefseg2-no-such-package==1.0"), dialog.failure
    assert dialog.failure.endswith(f"pip's full log: {log}") and log.is_file()
    assert "Worker Python setting is unchanged" in dialog.failure and dialog.status.text() == dialog.failure
    dialog.deleteLater()


def test_diagnostics_show_the_worker_environment() -> None:
    dialog = ProcessDialog(title="d", steps=[diagnostics_step(paths.venv_python(ROOT / ".venv"), ROOT)],
                           pretty_json=True)
    dialog.start()
    assert _wait_done(dialog) is True
    text = dialog.output.toPlainText()
    assert '"torch"' in text and '"backend"' in text
    dialog.deleteLater()


def test_settings_dialog_edits_a_copy() -> None:
    from rsrefseg2_qgis.settings_dialog import SettingsDialog

    original = PluginSettings(history=("kept",), device="cuda")
    dialog = SettingsDialog(settings=original, default_python="/default/python")
    assert dialog.python_widget.lineEdit().placeholderText() == "/default/python"
    dialog.python_widget.setFilePath("/opt/env/bin/python")
    assert dialog.tile_spin.text() == "Auto (model input)" and dialog.refine_combo.currentData() == "prompts"
    assert original.tile_grid() == (None, None)  # automatic: the engine uses the model's input size
    dialog.tile_spin.setValue(128)
    dialog.overlap_spin.setValue(500)  # more than the engine accepts (under half the tile): clamped
    dialog.refine_combo.setCurrentIndex(dialog.refine_combo.findData("none"))
    dialog.megapixels_spin.setValue(10)
    assert dialog.threads_spin.text() == "Automatic"
    dialog.threads_spin.setValue(2)
    edited = dialog.edited()
    assert edited.python == "/opt/env/bin/python" and edited.tile_size == 128 and edited.overlap == 63
    assert edited.tile_grid() == (128, 63) and edited.refine == "none"
    assert edited.max_pixels == 10_000_000 and edited.history == ("kept",) and edited.device == "cuda"
    assert edited.threads == 2
    assert original.python == ""
    dialog.tile_spin.setValue(16)  # below the smallest useful tile: raised to it
    assert dialog.edited().tile_size == 64
    dialog.deleteLater()
