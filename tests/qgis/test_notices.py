"""The message bar shows the plugin's latest outcome only: an old failure never comes back after a success."""

from __future__ import annotations

from qgis.core import Qgis, QgsProject, QgsRectangle
from qgis.gui import QgsMessageBar
from qgis_helpers import tiny_request

from rsrefseg2_qgis.raster_source import plan_raster
from rsrefseg2_qgis.runner import SegmentRunner
from rsrefseg2_qgis.tasks.segment_task import SegmentTask

QUARTER = (603_000.0, 5_339_872.0, 603_128.0, 5_340_000.0)


def test_a_failure_does_not_come_back_after_a_later_success(raster_layer, worker_client) -> None:
    bar = QgsMessageBar()  # a real bar: it stacks messages and re-shows the one under an expired message
    runner = SegmentRunner(client=lambda: worker_client, project=QgsProject.instance(), message_bar=bar,
                           max_pixels=lambda: 10**7)
    assert runner.submit(tiny_request("no-such-layer")) is None  # fails at once, stays until dismissed
    failure = bar.currentItem()
    assert failure is not None and failure.level() == Qgis.MessageLevel.Warning

    request = tiny_request(raster_layer.id(), extent=QUARTER)
    plan = plan_raster(raster_layer, QgsRectangle(*QUARTER), None, max_pixels=10**7)
    task = SegmentTask(request=request, plan=plan, client=worker_client, project=QgsProject.instance(),
                       notices=runner.notices)
    task.finished(task.run())
    success = bar.currentItem()
    assert success is not None and success.level() == Qgis.MessageLevel.Success, task.outcome
    bar.popWidget(success)  # what its timeout does
    assert bar.currentItem() is None, bar.currentItem().text()
    QgsProject.instance().removeAllMapLayers()
