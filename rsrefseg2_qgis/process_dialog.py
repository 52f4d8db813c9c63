"""``ProcessDialog``: run external commands one after another with their output shown live, cancellable.

Used by "Diagnostics" (``python -m backend info --json`` in the worker's environment) and by "Set up backend…"
(venv + pip). Everything is asynchronous (``QProcess`` signals), so the GUI never blocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, Qt, pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from .i18n import tr


@dataclass(frozen=True)
class Step:
    """One command: ``program`` with ``arguments``, run in ``cwd`` (None = inherit) with ``pythonpath`` set.

    Attributes:
        explain: turns the step's output (stdout and stderr) into what went wrong and what to do, shown when
            the step fails; None shows only the exit status.
        on_success: runs in the GUI thread once the step exited with status 0 (e.g. adopting what it checked)
            and returns a line to show; an ``OSError`` it raises fails the step with its text.
    """

    title: str
    program: str
    arguments: tuple[str, ...]
    cwd: str | None = None
    pythonpath: str | None = None
    explain: Callable[[str], str] | None = None
    on_success: Callable[[], str] | None = None


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
        self._output = ""  # the running step's stdout and stderr, for its ``explain``
        self._step: Step | None = None
        self.succeeded: bool | None = None
        self.failure = ""  # what went wrong, as the failed step's ``explain`` put it
        self.summary = ""  # a JSON document's "summary" (pretty_json: the diagnostics' readiness line)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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
        self._step = step
        self.status.setText(step.title)
        self.output.appendPlainText(f"$ {step.program} {' '.join(step.arguments)}")
        environment = QProcessEnvironment.systemEnvironment()
        environment.remove("PYTHONHOME")
        if step.pythonpath is not None:
            environment.insert("PYTHONPATH", step.pythonpath)
        self.process.setProcessEnvironment(environment)
        if step.cwd is not None:
            self.process.setWorkingDirectory(step.cwd)
        self._stdout = self._output = ""
        self.process.start(step.program, list(step.arguments))

    def _read_stdout(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        self._stdout += text
        self._output += text
        if not self._pretty_json:
            self.output.appendPlainText(text.rstrip("\n"))

    def _read_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
        self._output += text
        self.output.appendPlainText(text.rstrip("\n"))

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        if self._pretty_json and self._stdout.strip():
            try:
                document = json.loads(self._stdout)
            except ValueError:
                self.output.appendPlainText(self._stdout)
            else:
                self.output.appendPlainText(json.dumps(document, indent=2))
                if isinstance(document, dict) and isinstance(document.get("summary"), str):
                    self.summary = document["summary"]
        if exit_status != QProcess.ExitStatus.NormalExit or exit_code != 0:
            self.output.appendPlainText(tr("→ failed (exit status {code})").format(code=exit_code))
            explain = self._step.explain if self._step is not None else None
            self._fail(explain(self._output) if explain is not None else "")
            return
        if self._step is not None and self._step.on_success is not None:
            try:
                self.output.appendPlainText(self._step.on_success())
            except OSError as exc:
                self._fail(str(exc))
                return
        self._next()

    def _fail(self, failure: str) -> None:
        if self.succeeded is not None:
            return
        self.failure = failure
        if failure:
            self.output.appendPlainText(failure)
        self._finish(False)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            problem = tr("Cannot start {program}: {error}").format(program=self.process.program(),
                                                                    error=self.process.errorString())
            self.output.appendPlainText(problem)
            explain = self._step.explain if self._step is not None else None
            self._fail(explain(problem) if explain is not None else problem)

    def _finish(self, ok: bool) -> None:
        if self.succeeded is not None:
            return
        self.succeeded = ok
        self.status.setText(self.failure or self.summary or (tr("Done.") if ok else tr("Stopped.")))
        self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)
        self.completed.emit(ok)

    def cancel(self) -> None:
        """Kill the running step and stop; closes the dialog once nothing runs."""
        if self.succeeded is None:
            self._steps.clear()
            self._step = None  # the kill's exit status is no failure to explain
            self.process.kill()
            self.process.waitForFinished(3000)
            self._finish(False)
            return
        self.reject()


def diagnostics_step(python: Path, backend_root: Path) -> Step:
    """``python -m backend info --json`` with the worker's interpreter and backend root; its readiness line
    becomes the dialog's status, and a failure says which Python failed and what to do."""

    def explain(output: str) -> str:
        last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), tr("no output"))
        return tr("Not ready: the diagnostics failed with {python} ({last}). Choose another Python in Plugins → "
                  "RSRefSeg 2 → Settings… → Worker Python, or run Plugins → RSRefSeg 2 → Set up backend….").format(
                      python=python, last=last)

    return Step(tr("Backend diagnostics ({python})").format(python=python), str(python),
                ("-m", "backend", "info", "--json"), cwd=str(backend_root), pythonpath=str(backend_root),
                explain=explain)
