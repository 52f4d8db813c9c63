"""The plugin object QGIS creates: actions, the dock, the Processing provider, the shared worker client."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QInputDialog

from . import paths
from .client import BackendClient
from .dock import SegmentDock
from .i18n import tr
from .preload import ModelPreloader
from .process_dialog import ProcessDialog, diagnostics_step
from .processing.provider import RSRefSeg2Provider
from .requests import SegmentRequest
from .runner import SegmentRunner
from .settings import PluginSettings
from .settings_dialog import AUTHORS_MODELS, SettingsDialog, model_download_steps
from .setup_backend import detect_gpu, install_environment, setup_steps, staging_dir

MENU = "&RSRefSeg 2"
LOG_TAG = "RSRefSeg 2"


class RSRefSeg2Plugin:
    """Created by ``classFactory``; QGIS calls ``initProcessing``/``initGui`` on load and ``unload`` on unload.

    Args:
        iface: the QGIS interface.
    """

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: RSRefSeg2Provider | None = None
        self.dock: SegmentDock | None = None
        self.runner: SegmentRunner | None = None
        self.preloader: ModelPreloader | None = None
        self.actions: list[QAction] = []
        self.dialogs: list[ProcessDialog] = []
        self._setup_dialog: ProcessDialog | None = None  # the last "Set up backend…"
        self._client: BackendClient | None = None

    # ------------------------------------------------------------------------------------- worker client
    def client(self, python: Path | None = None) -> BackendClient:
        """The shared worker client, rebuilt (old worker shut down) when its interpreter or thread count changed.

        Args:
            python: the worker interpreter (Processing's ``PYTHON``); None = ``PluginSettings.worker_python()``.
        """
        settings = PluginSettings.load()
        python = Path(python) if python else settings.worker_python()
        current = self._client
        if current is None or current.python != python or current.threads != settings.threads:
            if current is not None:
                current.shutdown()
            self._client = BackendClient(python=python, backend_root=paths.backend_root(), log=_log_worker_line,
                                         threads=settings.threads)
        return self._client

    def shutdown_worker(self) -> None:
        """Stop the worker (plugin unload, QGIS exit)."""
        if self._client is not None:
            self._client.shutdown()

    def restart_worker(self) -> None:
        """The dock's Restart: stop the queries and the worker; a fresh one loads the chosen model again."""
        if self.runner is not None:
            self.runner.cancel_all()
            self.runner.notices.clear()  # what the old worker said is stale
        if self.preloader is not None:
            self.preloader.cancel()
        self.shutdown_worker()
        if self.dock is not None:
            self.dock.reload_model()
            self.dock.status_label.setText(tr("The backend worker was restarted."))

    def _active_layer(self):
        """QGIS's active layer (None under ``qgis_process``, where there is no interface)."""
        return self.iface.activeLayer() if self.iface is not None else None

    # ------------------------------------------------------------------------------------------- lifecycle
    def initProcessing(self) -> None:  # noqa: N802 (QGIS's name)
        """Register the Processing provider (also called alone by ``qgis_process``)."""
        if self.provider is None:
            self.provider = RSRefSeg2Provider(client=self.client, active_layer=self._active_layer)
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS's name)
        """Add the dock, its toggle action, "Set up backend…", and the Processing provider."""
        self.initProcessing()
        main_window = self.iface.mainWindow()
        settings = PluginSettings.load()
        self.dock = SegmentDock(iface=self.iface, settings=settings, parent=main_window)
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.runner = SegmentRunner(client=self.client, project=QgsProject.instance(),
                                    message_bar=self.iface.messageBar(),
                                    max_pixels=lambda: PluginSettings.load().max_pixels)
        self.dock.run_requested.connect(self._run)
        self.dock.cancel_requested.connect(self.runner.cancel_all)
        self.dock.diagnostics_requested.connect(self.show_diagnostics)
        self.dock.restart_requested.connect(self.restart_worker)
        self.runner.busy_changed.connect(self.dock.set_busy)
        self.runner.progress_changed.connect(self.dock.progress_bar.setValue)
        self.runner.status_changed.connect(self.dock.status_label.setText)
        self.runner.outcome_ready.connect(
            lambda outcome: self.dock.offer_refinement(outcome, self.client(), self.runner.notices))
        self.preloader = ModelPreloader(client=self.client)
        self.dock.preload_requested.connect(self.preloader.preload)
        self.preloader.loaded.connect(self.dock.show_model)
        self.preloader.failed.connect(self.dock.show_model_error)

        toggle = QAction(QIcon(paths.icon_path()), tr("Referring Segmentation"), main_window)
        toggle.setCheckable(True)
        toggle.toggled.connect(self.dock.setVisible)
        self.dock.visibilityChanged.connect(toggle.setChecked)
        setup = QAction(tr("Set up backend…"), main_window)
        setup.triggered.connect(self.choose_and_set_up_backend)
        configure = QAction(tr("Settings…"), main_window)
        configure.triggered.connect(self.edit_settings)
        self.actions = [toggle, setup, configure]
        self.iface.addToolBarIcon(toggle)
        for action in self.actions:
            self.iface.addPluginToMenu(MENU, action)
        QgsApplication.instance().aboutToQuit.connect(self.shutdown_worker)

    def unload(self) -> None:
        """Remove every action, the dock and the provider; stop queries and the worker."""
        with contextlib.suppress(TypeError):  # not connected when only initProcessing ran (qgis_process)
            QgsApplication.instance().aboutToQuit.disconnect(self.shutdown_worker)
        if self.runner is not None:
            self.runner.cancel_all()
        if self.preloader is not None:
            self.preloader.cancel()
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
            action.deleteLater()
        self.actions = []
        if self.dock is not None:
            self.dock.unload()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        for dialog in list(self.dialogs):
            dialog.cancel()  # stops a running step
            dialog.reject()  # and closes the window
            dialog.deleteLater()
        self.dialogs = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        self.shutdown_worker()

    # --------------------------------------------------------------------------------------------- actions
    def _run(self, request: SegmentRequest) -> None:
        settings = PluginSettings.load()
        demo = paths.demo_checkpoint()
        chosen = request.checkpoint if request.checkpoint and Path(request.checkpoint) != demo else ""
        replace(settings.with_phrase(request.phrases[0]), device=request.device, mode=request.load_mode,
                checkpoint=chosen).save()  # the demo model is saved as "" (the default), never by its path
        self.runner.submit(request)

    def _show_dialog(self, dialog: ProcessDialog) -> ProcessDialog:
        self.dialogs.append(dialog)
        dialog.finished.connect(lambda _result: self._forget(dialog))
        dialog.show()
        dialog.start()
        return dialog

    def _forget(self, dialog: ProcessDialog) -> None:
        if dialog in self.dialogs:
            self.dialogs.remove(dialog)
            dialog.deleteLater()

    def show_diagnostics(self) -> ProcessDialog:
        """Show ``python -m backend info --json`` as run by the worker's interpreter."""
        step = diagnostics_step(PluginSettings.load().worker_python(), paths.backend_root())
        return self._show_dialog(ProcessDialog(title=tr("RSRefSeg 2 diagnostics"), steps=[step], pretty_json=True,
                                               parent=self.iface.mainWindow()))

    def edit_settings(self) -> None:
        """Show the settings dialog; on OK save the settings and hand them to the dock."""
        profile = Path(QgsApplication.qgisSettingsDirPath())
        dialog = SettingsDialog(settings=PluginSettings.load(), default_python=str(paths.default_python(profile)),
                                parent=self.iface.mainWindow())
        if dialog.exec() == SettingsDialog.DialogCode.Accepted:
            edited = dialog.edited()
            edited.save()
            if self.dock is not None:
                self.dock.apply_settings(edited)
        dialog.deleteLater()

    def choose_and_set_up_backend(self) -> ProcessDialog | None:
        """Ask whether to fetch an authors' model too, then set up the backend (None when the user cancels)."""
        choices = [tr("No (the bundled demo model only)")] + [
            tr("{name} (trained on {dataset}, about 3 GB)").format(name=name, dataset=dataset)
            for name, dataset, _ in AUTHORS_MODELS]
        choice, ok = QInputDialog.getItem(self.iface.mainWindow(), tr("Set up the RSRefSeg 2 backend"),
                                          tr("Also download one of the authors' trained models?"), choices, 0, False)
        if not ok:
            return None
        index = choices.index(choice)
        return self.set_up_backend(AUTHORS_MODELS[index - 1][0] if index else None)

    def set_up_backend(self, authors_model: str | None = None) -> ProcessDialog:
        """Build the private venv apart; once its Python imports our packages it is moved into place and becomes
        the worker interpreter. A failed or cancelled set-up leaves the setting and the old venv as they were.

        Args:
            authors_model: also download and convert this authors' checkpoint (``rsrefseg2-rrsisd`` or
                ``rsrefseg2-refsegrs``) and the tokenizer it needs, with the new environment's backend.
        """
        running = self._setup_dialog
        if running is not None and running in self.dialogs and running.succeeded is None:
            running.raise_()  # a second set-up would build into the same folder
            running.activateWindow()
            return running
        venv_dir = paths.private_venv_dir(Path(QgsApplication.qgisSettingsDirPath()))
        log_file = venv_dir.parent / "setup-logs" / f"setup-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)

        def adopt() -> str:
            self.shutdown_worker()  # nothing may run from the environment that is moved aside
            python = install_environment(venv_dir)
            replace(PluginSettings.load(), python=str(python)).save()
            if self.dock is not None:
                self.dock.apply_settings(PluginSettings.load())
            return tr("The worker now uses {python}.").format(python=python)

        steps = setup_steps(venv_dir=venv_dir, gpu=detect_gpu(), log_file=log_file, adopt=adopt)
        if authors_model:
            steps += model_download_steps(paths.venv_python(venv_dir), authors_model)
        dialog = ProcessDialog(title=tr("Set up the RSRefSeg 2 backend"), steps=steps, parent=self.iface.mainWindow())
        cancelled = tr("Cancelled. The Worker Python setting is unchanged; the unfinished environment in {path} is "
                       "not used (the next Set up backend… removes it).").format(path=staging_dir(venv_dir))

        def tell_if_cancelled(ok: bool) -> None:
            if not ok and not dialog.failure:  # a failed step explained itself already
                dialog.status.setText(cancelled)

        dialog.completed.connect(tell_if_cancelled)
        self._setup_dialog = dialog
        return self._show_dialog(dialog)


def _log_worker_line(line: str) -> None:
    QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)
