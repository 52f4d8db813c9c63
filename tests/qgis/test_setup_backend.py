""""Set up backend…" in real QGIS with real venvs and real pip: offline it fails in seconds with advice, and a
set-up that does not end with a working Python never becomes the Worker Python (issue 25).

Offline is made real for pip: every HTTP(S) request goes through a proxy on a closed local port, and pip's own
configuration (mirrors, local wheel folders of this machine) is switched off.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qgis.core import QgsSettings
from qgis_helpers import wait_until

import rsrefseg2_qgis
from rsrefseg2_qgis import paths
from rsrefseg2_qgis import plugin as plugin_module
from rsrefseg2_qgis.process_dialog import ProcessDialog, Step
from rsrefseg2_qgis.settings import PREFIX, PluginSettings
from rsrefseg2_qgis.setup_backend import PROBE_TIMEOUT_S, setup_steps, staging_dir

PREVIOUS_PYTHON = "/previous/worker/bin/python"


@pytest.fixture
def plugin(qgis_iface) -> Iterator[rsrefseg2_qgis.RSRefSeg2Plugin]:
    saved = PluginSettings.load()
    PluginSettings(python=PREVIOUS_PYTHON).save()
    loaded = rsrefseg2_qgis.classFactory(qgis_iface)
    loaded.initGui()
    yield loaded
    loaded.unload()
    QgsSettings().remove(PREFIX.rstrip("/"))
    saved.save()


@pytest.fixture
def venv_dir(monkeypatch, tmp_path: Path) -> Path:
    """The private venv's place, holding an earlier environment (a marker file) that must survive."""
    folder = tmp_path / "profile" / "rsrefseg2" / "venv"
    folder.mkdir(parents=True)
    (folder / "earlier-environment").write_text("kept", encoding="utf-8")
    monkeypatch.setattr(plugin_module.paths, "private_venv_dir", lambda profile: folder)
    return folder


@pytest.fixture
def offline(monkeypatch) -> None:
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing listens, refused at once


def _finished(dialog: ProcessDialog, seconds: float) -> bool:
    return wait_until(lambda: dialog.succeeded is not None, seconds)


def _unchanged(venv_dir: Path) -> None:
    assert PluginSettings.load().python == PREVIOUS_PYTHON
    assert (venv_dir / "earlier-environment").read_text(encoding="utf-8") == "kept"
    assert not paths.venv_python(venv_dir).exists()


def test_offline_set_up_fails_in_seconds_with_what_to_do(plugin, venv_dir, offline) -> None:
    """It retried pip for about 2 minutes and ended on an unrelated `cuda-bindings` error with no advice."""
    started = time.monotonic()
    dialog = plugin.set_up_backend()
    assert _finished(dialog, 120)
    took = time.monotonic() - started
    text = dialog.output.toPlainText()
    assert dialog.succeeded is False, text[-2000:]
    assert "No package index is reachable from this computer" in dialog.failure, dialog.failure
    assert "Settings… → Worker Python" in dialog.failure and "scripts/setup.sh" in dialog.failure
    log = Path(dialog.failure.rsplit("pip's log: ", 1)[1])
    assert log.is_file() and "Could not fetch URL" in log.read_text(encoding="utf-8")
    assert dialog.status.text() == dialog.failure  # the advice is the dialog's headline, not buried in pip's text
    assert "Installing PyTorch" not in text  # stopped before any download was tried
    # Creating the venv (with pip) takes most of it; the probe itself gives up within its timeout.
    assert took < 60 + PROBE_TIMEOUT_S, took
    _unchanged(venv_dir)
    assert paths.venv_python(staging_dir(venv_dir)).exists()  # the unfinished one is kept apart, never used
    dialog.reject()


def _staged_steps(*, share_our_packages: bool):
    """The real set-up steps without the network ones (probe, pip): removal, venv creation, the import check.
    ``share_our_packages`` puts this interpreter's site-packages on the new venv's path (a ``.pth`` file), so
    that its check passes as after a real install."""

    def steps(**kwargs) -> list[Step]:
        real = setup_steps(**kwargs)
        kept = [real[0], real[1]]
        if share_our_packages:
            staged_site = staging_dir(kwargs["venv_dir"]) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
            folders = "\n".join(site.getsitepackages())
            kept.append(Step("share", sys.executable, ("-c", f"import pathlib; p = pathlib.Path({str(staged_site)!r})"
                                                            f" / 'site-packages' / 'ours.pth'; p.write_text("
                                                            f"{folders!r})")))
        return [*kept, real[-1]]

    return steps


def test_a_new_python_that_lacks_our_packages_never_becomes_the_worker_python(plugin, venv_dir, monkeypatch) -> None:
    """The half-built environment became the default Worker Python; the dock then said "this is a bug"."""
    monkeypatch.setattr(plugin_module, "setup_steps", _staged_steps(share_our_packages=False))
    dialog = plugin.set_up_backend()
    assert _finished(dialog, 120)
    assert dialog.succeeded is False
    assert "does not work" in dialog.failure and "No module named" in dialog.failure, dialog.failure
    assert str(staging_dir(venv_dir)) in dialog.failure and "setting is unchanged" in dialog.failure
    _unchanged(venv_dir)
    dialog.reject()


@pytest.mark.skipif(os.name == "nt", reason="the venv layout written by the test is POSIX's")
def test_a_checked_python_is_moved_into_place_and_adopted(plugin, venv_dir, monkeypatch) -> None:
    monkeypatch.setattr(plugin_module, "setup_steps", _staged_steps(share_our_packages=True))
    dialog = plugin.set_up_backend()
    assert _finished(dialog, 180)
    assert dialog.succeeded, dialog.output.toPlainText()[-2000:]
    python = paths.venv_python(venv_dir)
    assert PluginSettings.load().python == str(python) and not staging_dir(venv_dir).exists()
    assert (venv_dir.with_name("venv.replaced") / "earlier-environment").is_file()  # kept until the next set-up
    moved = subprocess.run([str(python), "-c", "import sys, torch; print(sys.prefix)"], capture_output=True,
                           text=True, timeout=120, check=True)
    assert Path(moved.stdout.strip()) == venv_dir  # the moved venv still works from its new place
    dialog.reject()


def test_the_probe_asks_the_index_pip_is_configured_with(tmp_path: Path, monkeypatch) -> None:
    """The probe honours pip's own configuration (here a mirror in a pip.conf, as offices set one): it passes when
    that index answers with PyTorch, and fails, with the advice, when it answers without."""
    simple = tmp_path / "mirror" / "simple"
    (simple / "torch").mkdir(parents=True)
    (simple / "torch" / "index.html").write_text(
        '<html><body><a href="torch-2.14.1-py3-none-any.whl">torch-2.14.1-py3-none-any.whl</a></body></html>',
        encoding="utf-8")
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nindex-url = {simple.as_uri()}\n", encoding="utf-8")
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    log = tmp_path / "setup.log"
    steps = setup_steps(venv_dir=tmp_path / "venv", gpu=False, platform="darwin", log_file=log)  # PyPI's index
    probe = next(step for step in steps if step.arguments[:4] == ("-m", "pip", "index", "versions"))
    assert probe.arguments[-1] == "torch" and "--index-url" not in probe.arguments
    started = time.monotonic()
    answered = subprocess.run([sys.executable, *probe.arguments], capture_output=True, text=True, timeout=120)
    assert answered.returncode == 0 and "2.14.1" in answered.stdout, answered.stderr
    assert time.monotonic() - started < 30
    (simple / "torch" / "index.html").write_text("<html><body></body></html>", encoding="utf-8")
    empty = subprocess.run([sys.executable, *probe.arguments], capture_output=True, text=True, timeout=120)
    assert empty.returncode != 0
    advice = probe.explain(empty.stdout + empty.stderr)
    assert advice.startswith("The package index offers no PyTorch for this Python (ERROR: "), advice
    assert "Settings… → Worker Python" in advice and str(log) in advice
