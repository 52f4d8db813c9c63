"""``ProcessDialog``: run external commands one after another with their output shown live, cancellable.

Used by "Diagnostics" (``python -m backend info --json`` in the worker's environment) and by "Set up backend…"
(venv + pip). Everything is asynchronous (``QProcess`` signals), so the GUI never blocks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from .i18n import tr


@dataclass(frozen=True)
class Step:
    """One command: ``program`` with ``arguments``, run in ``cwd`` (None = inherit) with ``pythonpath`` set."""

    title: str
    program: str
    arguments: tuple[str, ...]
    cwd: str | None = None
    pythonpath: str | None = None


class ProcessDialog(QDialog):
    """Runs ``steps`` in order; stops at the first failure or on Cancel.

    Args:
        title: the window title.
        steps: the commands.
        pretty_json: show a command's stdout re-indented when it is one JSON document.
        parent: the parent widget.

    Signals:
        completed(bool): emitted once, True when every step exited with status 0. (Not ``done``: that name is
            ``QDialog.done()``, which ``reject()`` and the window's close button call.)
    """

    completed = pyqtSignal(bool)

    def __init__(self, *, title: str, steps: Sequence[Step], pretty_json: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(720, 480)
        self._steps = list(steps)
        self._pretty_json = pretty_json
        self._stdout = ""
        self.succeeded: bool | None = None
        self.status = QLabel(self)
        self.output = QPlainTextEdit(self)
        self.output.setReadOnly(True)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.rejected.connect(self.cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.buttons)
        self.process = QProcess(self)
        self.process.readyReadStandardOutput.connect(self._read_stdout)
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)

    def start(self) -> None:
        """Start the first step (returns at once)."""
        self._next()

    def _next(self) -> None:
        if not self._steps:
            self._finish(True)
            return
        step = self._steps.pop(0)
        self.status.setText(step.title)
        self.output.appendPlainText(f"$ {step.program} {' '.join(step.arguments)}")
        environment = QProcessEnvironment.systemEnvironment()
        environment.remove("PYTHONHOME")
        if step.pythonpath is not None:
            environment.insert("PYTHONPATH", step.pythonpath)
        self.process.setProcessEnvironment(environment)
        if step.cwd is not None:
            self.process.setWorkingDirectory(step.cwd)
        self._stdout = ""
        self.process.start(step.program, list(step.arguments))

    def _read_stdout(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        self._stdout += text
        if not self._pretty_json:
            self.output.appendPlainText(text.rstrip("\n"))

    def _read_stderr(self) -> None:
        self.output.appendPlainText(bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
                                    .rstrip("\n"))

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        if self._pretty_json and self._stdout.strip():
            try:
                self.output.appendPlainText(json.dumps(json.loads(self._stdout), indent=2))
            except ValueError:
                self.output.appendPlainText(self._stdout)
        if exit_status != QProcess.ExitStatus.NormalExit or exit_code != 0:
            self.output.appendPlainText(tr("→ failed (exit status {code})").format(code=exit_code))
            self._finish(False)
            return
        self._next()

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.output.appendPlainText(tr("Cannot start {program}: {error}").format(
                program=self.process.program(), error=self.process.errorString()))
            self._finish(False)

    def _finish(self, ok: bool) -> None:
        if self.succeeded is not None:
            return
        self.succeeded = ok
        self.status.setText(tr("Done.") if ok else tr("Stopped."))
        self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)
        self.completed.emit(ok)

    def cancel(self) -> None:
        """Kill the running step and stop; closes the dialog once nothing runs."""
        if self.succeeded is None:
            self._steps.clear()
            self.process.kill()
            self.process.waitForFinished(3000)
            self._finish(False)
            return
        self.reject()


def diagnostics_step(python: Path, backend_root: Path) -> Step:
    """``python -m backend info --json`` with the worker's interpreter and backend root."""
    return Step(tr("Backend diagnostics ({python})").format(python=python), str(python),
                ("-m", "backend", "info", "--json"), cwd=str(backend_root), pythonpath=str(backend_root))
