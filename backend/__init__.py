"""RSRefSeg 2 inference engine: raster in, georeferenced polygons out. Never imports qgis.

Layers, bottom first (a module imports only from its own folder and the layers below; ``tests/test_layering.py``):

0. ``errors`` (structured errors);
1. ``protocol`` (the worker's JSON lines; the plugin loads this file by path, so it imports nothing), ``threads``
   (torch thread count and log level, checked), ``files/`` (scratch files, stale sweep);
2. ``raster/`` (reading, resolution, tiling, radiometric stretch), ``output/`` (vectorize, atomic writes, preflight),
   ``weights/`` (the base-weights manager): siblings that never import each other;
3. ``model/`` (pure torch);
4. ``predictor`` (``set_image``/``predict`` over the model); then ``loading`` (checkpoint → predictor) and
   ``passes`` (the view and find-all passes over tiles); then ``engine`` (one request end to end);
5. the entry points: ``worker`` (the plugin's process), ``cli/`` (``python -m backend``).
"""
