"""Every dialog the plugin has opens, finishes and closes through its real buttons, with no error in a slot.

An exception raised in a Qt slot does not fail a test by itself: PyQt hands it to ``sys.excepthook`` (QGIS shows
it in its Python error dialog). The ``slot_errors`` fixture records what reaches the hook and fails the test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox
from qgis_helpers import wait_until

import rsrefseg2_qgis
from rsrefseg2_qgis import plugin as plugin_module
from rsrefseg2_qgis.process_dialog import ProcessDialog, Step
from rsrefseg2_qgis.settings import PREFIX, PluginSettings
from rsrefseg2_qgis.settings_dialog import SettingsDialog


@pytest.fixture
def slot_errors() -> Iterator[list[BaseException]]:
    """Exceptions raised in slots during the test (the test fails if any remain)."""
    caught: list[BaseException] = []
    previous = sys.excepthook
    sys.excepthook = lambda kind, value, trace: caught.append(value)
    yield caught
    sys.excepthook = previous
    assert not caught, [repr(error) for error in caught]


@pytest.fixture
def plugin(qgis_iface, slot_errors) -> Iterator[rsrefseg2_qgis.RSRefSeg2Plugin]:
    saved = PluginSettings.load()
    loaded = rsrefseg2_qgis.classFactory(qgis_iface)
    loaded.initGui()
    yield loaded
    loaded.unload()
    QgsSettings().remove(PREFIX.rstrip("/"))
    saved.save()


def _click(dialog: ProcessDialog, which: QDialogButtonBox.StandardButton) -> None:
    button = dialog.buttons.button(which)
    assert button is not None and button.isVisible(), f"no visible {which} button"
    button.click()


def test_diagnostics_opens_finishes_and_closes(plugin, slot_errors) -> None:
    dialog = plugin.show_diagnostics()
    assert dialog.isVisible()
    assert wait_until(lambda: dialog.succeeded is not None, 120)
    assert dialog.succeeded, dialog.output.toPlainText()[-2000:]
    assert dialog.status.text().startswith("Ready: ")  # the readiness line heads the details
    _click(dialog, QDialogButtonBox.StandardButton.Close)
    assert not dialog.isVisible() and dialog not in plugin.dialogs


def test_diagnostics_with_a_python_that_cannot_run_say_so(plugin, slot_errors, monkeypatch, tmp_path) -> None:
    """A Worker Python that is gone (a removed venv): the dialog says which and what to do."""
    monkeypatch.setenv("RSREFSEG2_PYTHON", str(tmp_path / "gone" / "bin" / "python"))
    dialog = plugin.show_diagnostics()
    assert wait_until(lambda: dialog.succeeded is not None, 60)
    assert dialog.succeeded is False and dialog.status.text() == dialog.failure
    assert str(tmp_path / "gone" / "bin" / "python") in dialog.failure and "Not ready" in dialog.failure
    assert "Settings… → Worker Python" in dialog.failure
    _click(dialog, QDialogButtonBox.StandardButton.Close)


def test_diagnostics_cancel_then_close(plugin, slot_errors) -> None:
    dialog = plugin.show_diagnostics()
    _click(dialog, QDialogButtonBox.StandardButton.Cancel)  # kills the running step
    assert dialog.succeeded is False
    _click(dialog, QDialogButtonBox.StandardButton.Close)
    assert not dialog.isVisible() and dialog not in plugin.dialogs


def test_set_up_backend_adopts_its_python_and_closes(plugin, slot_errors, monkeypatch, tmp_path: Path) -> None:
    """The real dialog and signal wiring; the pip steps are replaced by quick local commands (no network here)."""
    venv_python = tmp_path / "venv" / "bin" / "python"
    staged_python = tmp_path / "venv.partial" / "bin" / "python"
    monkeypatch.setattr(plugin_module.paths, "private_venv_dir", lambda profile: tmp_path / "venv")
    monkeypatch.setattr(plugin_module, "detect_gpu", lambda: False)
    monkeypatch.setattr(plugin_module, "setup_steps", lambda **kwargs: [
        Step("make the venv", sys.executable, ("-c", f"import pathlib; p = pathlib.Path({str(staged_python)!r}); "
                                                     "p.parent.mkdir(parents=True); p.touch()"),
             on_success=kwargs["adopt"])])
    dialog = plugin.set_up_backend()
    assert wait_until(lambda: dialog.succeeded is not None, 60)
    assert dialog.succeeded and PluginSettings.load().python == str(venv_python)
    _click(dialog, QDialogButtonBox.StandardButton.Close)
    assert not dialog.isVisible() and dialog not in plugin.dialogs


def test_set_up_backend_cancelled_keeps_the_python(plugin, slot_errors, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(plugin_module.paths, "private_venv_dir", lambda profile: tmp_path / "venv")
    monkeypatch.setattr(plugin_module, "setup_steps", lambda **_: [
        Step("wait", sys.executable, ("-c", "import time; time.sleep(60)"))])
    before = PluginSettings.load().python
    dialog = plugin.set_up_backend()
    _click(dialog, QDialogButtonBox.StandardButton.Cancel)
    assert dialog.succeeded is False and PluginSettings.load().python == before
    assert dialog.status.text().startswith("Cancelled. The Worker Python setting is unchanged; the unfinished "
                                           f"environment in {tmp_path / 'venv.partial'} is not used")
    _click(dialog, QDialogButtonBox.StandardButton.Close)
    assert not dialog.isVisible()


def test_a_second_set_up_while_one_runs_shows_the_running_one(plugin, slot_errors, monkeypatch, tmp_path) -> None:
    """Two set-ups at once would build into the same folder: the second request shows the first."""
    monkeypatch.setattr(plugin_module.paths, "private_venv_dir", lambda profile: tmp_path / "venv")
    monkeypatch.setattr(plugin_module, "setup_steps", lambda **_: [
        Step("wait", sys.executable, ("-c", "import time; time.sleep(60)"))])
    first = plugin.set_up_backend()
    assert plugin.set_up_backend() is first and plugin.dialogs == [first]
    _click(first, QDialogButtonBox.StandardButton.Cancel)
    second = plugin.set_up_backend()  # once it ended, a new set-up may start
    assert second is not first
    _click(second, QDialogButtonBox.StandardButton.Cancel)
    for dialog in (first, second):
        _click(dialog, QDialogButtonBox.StandardButton.Close)


def test_closing_a_process_dialog_by_the_window(slot_errors) -> None:
    dialog = ProcessDialog(title="t", steps=[Step("quick", sys.executable, ("-c", "print('ok')"))])
    dialog.show()
    dialog.start()
    assert wait_until(lambda: dialog.succeeded is not None, 60)
    dialog.close()  # the title bar's close button: reject() → done()
    assert not dialog.isVisible()
    dialog.deleteLater()


@pytest.mark.parametrize("button", [QDialogButtonBox.StandardButton.Ok, QDialogButtonBox.StandardButton.Cancel])
def test_settings_dialog_ok_and_cancel(plugin, slot_errors, button) -> None:
    replace_python = "/opt/somewhere/bin/python"

    def operate() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, SettingsDialog)
        dialog.python_widget.setFilePath(replace_python)
        dialog.findChild(QDialogButtonBox).button(button).click()

    before = PluginSettings.load().python
    QTimer.singleShot(0, operate)
    plugin.edit_settings()
    expected = replace_python if button == QDialogButtonBox.StandardButton.Ok else before
    assert PluginSettings.load().python == expected
    assert QApplication.activeModalWidget() is None


@pytest.mark.parametrize("finished", [False, True])
def test_unloading_the_plugin_closes_its_dialogs(plugin, slot_errors, finished) -> None:
    """Plugin unload and QGIS exit close what is still open, running or finished."""
    dialog = plugin.show_diagnostics()
    if finished:
        assert wait_until(lambda: dialog.succeeded is not None, 120)
    plugin.unload()
    assert not dialog.isVisible() and plugin.dialogs == []


def test_set_up_backend_can_fetch_an_authors_model(plugin, slot_errors, monkeypatch, tmp_path: Path) -> None:
    """After the environment, "Set up backend…" runs the model's download steps with the new environment's Python.
    The pip and download commands are replaced by quick local ones that leave marks (no network here)."""
    marks = tmp_path / "marks"
    monkeypatch.setattr(plugin_module.paths, "private_venv_dir", lambda profile: tmp_path / "venv")
    monkeypatch.setattr(plugin_module, "detect_gpu", lambda: False)
    monkeypatch.setattr(plugin_module, "setup_steps", lambda **_: [
        Step("venv", sys.executable, ("-c", f"import pathlib; pathlib.Path({str(marks)!r}).mkdir()"))])
    real_steps = plugin_module.model_download_steps(tmp_path / "venv" / "bin" / "python", "rsrefseg2-refsegrs")
    assert [s.arguments[-1] for s in real_steps] == ["rsrefseg2-refsegrs", "siglip2-tokenizer"]
    assert all(s.program == str(tmp_path / "venv" / "bin" / "python") for s in real_steps)
    monkeypatch.setattr(plugin_module, "model_download_steps", lambda python, name: [
        Step(step.title, sys.executable, ("-c", f"import pathlib; (pathlib.Path({str(marks)!r}) / "
                                                f"{step.arguments[-1]!r}).touch()")) for step in real_steps])
    dialog = plugin.set_up_backend("rsrefseg2-refsegrs")
    assert wait_until(lambda: dialog.succeeded is not None, 60)
    assert dialog.succeeded and sorted(p.name for p in marks.iterdir()) == ["rsrefseg2-refsegrs", "siglip2-tokenizer"]
    _click(dialog, QDialogButtonBox.StandardButton.Close)


def test_diagnostics_work_when_the_worker_python_lacks_our_packages(plugin, slot_errors, monkeypatch,
                                                                     tmp_path: Path) -> None:
    """A real, bare venv (no numpy, no tqdm): Diagnostics crashed on the missing tqdm exactly when needed."""
    import subprocess

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    monkeypatch.setenv("RSREFSEG2_PYTHON", str(tmp_path / "bare" / "bin" / "python"))
    dialog = plugin.show_diagnostics()
    assert wait_until(lambda: dialog.succeeded is not None, 120)
    text = dialog.output.toPlainText()
    assert dialog.succeeded, text[-2000:]
    assert "Not ready: this Python" in text and "numpy" in text and "Worker Python" in text
    # The readiness line is the dialog's headline, above the details.
    assert dialog.status.text().startswith(f"Not ready: this Python ({tmp_path / 'bare' / 'bin' / 'python'}) "
                                           "lacks torch, ") and "Settings… → Worker Python" in dialog.status.text()
    _click(dialog, QDialogButtonBox.StandardButton.Close)
