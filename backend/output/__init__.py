"""The output side: masks become polygons, polygons become files, safely.

- ``vectorize``: probability map → polygons in the raster's CRS with their scores.
- ``writing``: the GeoPackage + GeoJSON pair, written atomically, never over a user's file unasked.
- ``swap``: the pair put in place as one journalled change, rolled back if its writer was killed.
- ``preflight``: cheap checks before any model work: text encoding, output targets, free disk space.

May import ``backend.errors``, ``backend.protocol`` and ``backend.files``; never the raster side, the weights
manager, the model or the engine above it.
"""
