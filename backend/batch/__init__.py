"""Batch segmentation: the engine over many rasters and huge mosaics, in one process or on Ray.

One concept per module: ``plan`` (inputs → parts: whole files, or windows of a mosaic), ``manifest`` (the JSON
record of every part's status, written atomically after each part, so a rerun resumes), ``work`` (one part
through the engine, its failure recorded instead of raised), ``local`` (every part in this process), ``ray_data``
(the same parts on Ray Data, model-holding actors; Ray is imported only there and only when asked for),
``merge`` (the parts' polygons into one GeoPackage, joining objects cut by part borders), ``run`` (the whole
command: plan, runner, merge, summary).

May import the engine and everything below it (``backend.engine``, ``backend.loading``, ``backend.raster``,
``backend.output``, ``backend.errors``, ``backend.environment.variables``); imported only by ``backend.cli``.
"""
