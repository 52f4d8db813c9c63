#!/bin/sh
# Run QGIS's command-line Processing tool headless, the same way on every supported platform:
#   scripts/qgis_process.sh run rsrefseg2:referringsegmentation -- INPUT=scene.tif PHRASE="the red building" OUTPUT=out.gpkg
#
# - Debian and Ubuntu ship `qgis_process` as a shell wrapper that adds `--noversioncheck` from /etc/default/qgis,
#   which QGIS 3.22's qgis_process refuses ("Command --noversioncheck not known!"); the real program beside it is
#   `qgis_process.bin`, which this script runs directly.
# - Without a display, Qt aborts unless it uses the offscreen platform: QT_QPA_PLATFORM defaults to offscreen.
# - QGIS_PROCESS=/path/to/qgis_process picks the program explicitly (e.g. a QGIS.app bundle on macOS).
# The worker's Python comes from RSREFSEG2_PYTHON, the PYTHON parameter, or the plugin's settings.
set -eu

find_qgis_process() {
    if [ -n "${QGIS_PROCESS:-}" ]; then
        echo "$QGIS_PROCESS"
        return
    fi
    found=$(command -v qgis_process 2>/dev/null || true)
    if [ -n "$found" ] && [ -x "$found.bin" ]; then
        echo "$found.bin"  # Debian/Ubuntu: skip the wrapper and its --noversioncheck
        return
    fi
    if [ -n "$found" ]; then
        echo "$found"
        return
    fi
    for bundle in /Applications/QGIS*.app/Contents/MacOS/bin/qgis_process; do
        if [ -x "$bundle" ]; then
            echo "$bundle"
            return
        fi
    done
    echo "qgis_process was not found: install QGIS (3.22 or newer) or set QGIS_PROCESS=/path/to/qgis_process" >&2
    exit 127
}

program=$(find_qgis_process)
QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export QT_QPA_PLATFORM
exec "$program" "$@"
