#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine: QGIS's Python bindings, the project venv, torch, the project.
#
# Idempotent: every step checks first and skips what is already done, so a second run takes seconds.
# Environment overrides:
#   RSREFSEG2_TORCH="torch==X torchvision==Y"  the torch pair to install (default: the pair this project is tested on)
#   RSREFSEG2_EXTRAS="train,dev"                 the project extras to install
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_SPEC=${RSREFSEG2_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
EXTRAS=${RSREFSEG2_EXTRAS:-"train,dev"}
SYSTEM_PYTHON=/usr/bin/python3
VENV=.venv

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "QGIS Python bindings for $SYSTEM_PYTHON"
if QT_QPA_PLATFORM=offscreen "$SYSTEM_PYTHON" -c "import qgis.core" 2>/dev/null \
   && command -v qgis_process >/dev/null && command -v xvfb-run >/dev/null; then
  echo "present: $(QT_QPA_PLATFORM=offscreen "$SYSTEM_PYTHON" -c 'from qgis.core import Qgis; print(Qgis.QGIS_VERSION)')"
elif command -v apt-get >/dev/null; then
  echo "installing python3-qgis, qgis-providers, xvfb from the distribution (about 75 s)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    python3-qgis qgis-providers qgis xvfb python3-venv >/dev/null
else
  echo "error: no apt-get here. Install QGIS (>= 3.22) with its Python bindings for $SYSTEM_PYTHON, then rerun." >&2
  exit 1
fi

step "virtual environment $VENV (system site packages, so QGIS and PyQt are visible)"
if [ -x "$VENV/bin/python" ] && grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then
  echo "present: $("$VENV/bin/python" --version)"
else
  rm -rf "$VENV"
  "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  echo "created with $("$VENV/bin/python" --version)"
fi
# Debian's pyproj (seen through the system site packages, imported by pyogrio) looks for its data under
# sys.prefix, i.e. the venv, and warns on every run without it: point it at the system's PROJ data.
if [ -d /usr/share/proj ] && [ ! -e "$VENV/share/proj" ]; then
  mkdir -p "$VENV/share" && ln -s /usr/share/proj "$VENV/share/proj"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

step "torch and torchvision, installed together and first ($TORCH_SPEC)"
# shellcheck disable=SC2086  # TORCH_SPEC is a list of requirement specifiers
if "$VENV/bin/python" - $TORCH_SPEC <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import torchvision  # noqa: F401  (imports torch too: proves the pair loads together)
wanted = dict(arg.split("==") for arg in sys.argv[1:])
sys.exit(any(version(name).split("+")[0] != v for name, v in wanted.items()))
EOF
then
  echo "present: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
else
  # shellcheck disable=SC2086
  "${PIP[@]}" $TORCH_SPEC
fi

step "the project and its dependencies (extras: $EXTRAS)"
stamp="$VENV/.rsrefseg2-installed"
fingerprint=$(cat pyproject.toml backend/requirements.txt; echo "$EXTRAS")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] \
   && "$VENV/bin/python" -c "import open_clip, segment_anything, rasterio, backend" 2>/dev/null; then
  echo "up to date"
else
  "${PIP[@]}" -e ".[$EXTRAS]"
  printf '%s' "$fingerprint" > "$stamp"
  echo "installed"
fi

SAM2_REFERENCE=$VENV/reference/sam2
step "dev only: Meta's SAM 2.1 code as a test reference, apart from the venv ($SAM2_REFERENCE)"
# The SAM 2.1 parity tests compare our image path with Meta's. PyPI's sam2 ships a top-level `training` package
# that would shadow ours, so it never enters site-packages: it goes into its own folder (tests append it to the
# end of sys.path), built without its CUDA extension and against the venv's torch.
SAM2_SPEC="sam2==1.1.0 hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 iopath==0.1.10 portalocker"
if [[ ",$EXTRAS," != *",dev,"* ]]; then
  echo "skipped (no dev extra)"
elif [ -f "$SAM2_REFERENCE/.spec" ] && [ "$(cat "$SAM2_REFERENCE/.spec")" = "$SAM2_SPEC" ]; then
  echo "present"
else
  rm -rf "$SAM2_REFERENCE"
  # shellcheck disable=SC2086  # SAM2_SPEC is a list of requirement specifiers
  SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-deps --no-build-isolation --target "$SAM2_REFERENCE" $SAM2_SPEC
  printf '%s' "$SAM2_SPEC" > "$SAM2_REFERENCE/.spec"
  echo "installed"
fi

HF_VERSION=5.18.0
HF_REFERENCE=$VENV/reference/transformers
step "dev only: Hugging Face transformers $HF_VERSION as a SigLIP test reference, apart from the venv ($HF_REFERENCE)"
# The authors' checkpoints were made with transformers' SiglipVisionModel/SiglipTextModel; the import tests compare
# with them (tests/model/hf_reference.py appends this folder to the end of sys.path). No dependencies are installed:
# the ones it imports (huggingface_hub, tokenizers, safetensors, regex, pyyaml) are already in the venv.
if [[ ",$EXTRAS," != *",dev,"* ]]; then
  echo "skipped (no dev extra)"
elif [ -d "$HF_REFERENCE/transformers-$HF_VERSION.dist-info" ]; then
  echo "present"
else
  rm -rf "$HF_REFERENCE"
  "${PIP[@]}" --no-deps --target "$HF_REFERENCE" "transformers==$HF_VERSION"
  echo "installed"
fi
if [[ ",$EXTRAS," == *",dev,"* ]]; then
  "$VENV/bin/python" - "$HF_REFERENCE" <<'EOF'
import sys
sys.path.append(sys.argv[1])
from transformers import SiglipTextModel, SiglipVisionModel  # noqa: F401  (fails loudly if a dependency is missing)
EOF
fi

step "check: QGIS, torch and the project import from $VENV"
QT_QPA_PLATFORM=offscreen "$VENV/bin/python" - <<'EOF'
from qgis.core import Qgis
import numpy, rasterio, torch, open_clip, segment_anything  # noqa: F401
print(f"QGIS {Qgis.QGIS_VERSION}, torch {torch.__version__}, numpy {numpy.__version__}, rasterio {rasterio.__version__}")
EOF
echo
echo "Setup done. Run the demo: ./scripts/demo.sh    Run the tests: .venv/bin/python -m pytest"
