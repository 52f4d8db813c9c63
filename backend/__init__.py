"""RSRefSeg 2 inference engine: raster in, georeferenced polygons out. Never imports qgis."""
