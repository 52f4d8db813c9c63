#!/usr/bin/env bash
# Run the main job on the bundled sample: segment a referring phrase in resources/sample/sample.tif and write
# georeferenced polygons (GeoPackage + GeoJSON) into demo-output/. Uses the bundled demo model, which knows only
# synthetic scenes like the sample; see the README for the full model.
set -euo pipefail
cd "$(dirname "$0")/.."
PHRASE=${1:-"the red building at the top left"}
CHECKPOINT=resources/models/demo-tiny.safetensors
mkdir -p demo-output
out="demo-output/$(echo "$PHRASE" | tr -cs 'A-Za-z0-9' '_' | sed 's/^_//; s/_$//').gpkg"
echo "==> segmenting \"$PHRASE\" in resources/sample/sample.tif -> $out"
# The sample (512 px at 0.5 m) is larger than the demo model's 256 px input: the model finds the phrase on the whole
# sample resampled to 256 px, and --refine none keeps that mask, upsampled to 0.5 m. For this small model that
# scores best; refining on native-resolution tiles does not pay off (benchmarks/RESULTS.md, refinement table).
.venv/bin/python -m backend segment resources/sample/sample.tif "$PHRASE" --refine none \
  --checkpoint "$CHECKPOINT" -o "$out" --overwrite
