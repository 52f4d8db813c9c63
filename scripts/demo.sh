#!/usr/bin/env bash
# Run the main job on the bundled sample: segment a referring phrase in resources/sample/sample.tif and write
# georeferenced polygons (GeoPackage + GeoJSON) into demo-output/. Uses the bundled demo model, which knows only
# synthetic scenes like the sample; see the README for full-size models.
set -euo pipefail
cd "$(dirname "$0")/.."
PHRASE=${1:-"the red building at the top left"}
CHECKPOINT=resources/models/demo-synthetic.safetensors
mkdir -p demo-output
out="demo-output/$(echo "$PHRASE" | tr -cs 'A-Za-z0-9' '_' | sed 's/^_//; s/_$//').gpkg"
echo "==> segmenting \"$PHRASE\" in resources/sample/sample.tif -> $out"
# The product's defaults: the sample is read at the resolution the model was trained at (printed as
# "resolution: ..."), and the phrase's best-matching object is the answer.
.venv/bin/python -m backend segment resources/sample/sample.tif "$PHRASE" --checkpoint "$CHECKPOINT" \
  -o "$out" --overwrite
