"""The raster side: pixels in, at the right scale and in the right pieces.

- ``reading``: open a GeoTIFF/VRT, check it (georeferencing, CRS, bands, nodata), read a window as a view.
- ``resolution``: the ground resolution a view is read at (native, a number, or the model's trained scale).
- ``tiling``: tile grids with overlap, core stitching, the disk-backed probability canvas.
- ``normalize``: the per-band radiometric stretch, computed once per run over the whole window.

May import ``backend.errors``, ``backend.protocol`` and ``backend.files``; never the output side, the weights
manager, the model or the engine above it.
"""
