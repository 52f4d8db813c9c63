#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine: QGIS's Python bindings, the project venv, torch, the project.
#
# Idempotent: every step checks first and skips what is already done, so a second run takes seconds.
# Never compiles anything and never replaces the system's numpy (the one QGIS's and GDAL's bindings were built
# against): the venv sees the system site packages, and every pip install here is constrained to the system's
# numpy version, whatever its major version (Debian 12: 1.24, Debian 13: 2.2), so pip picks dependency releases
# that work with it instead of installing another numpy.
# Tried on Debian 12, 13 and sid: scripts/try_debian.sh, results in benchmarks/RESULTS.md.
#
# torch and torchvision: the pair pip installs (PIP_TORCH below, the pair this project is tested on) when the
# machine lists an NVIDIA GPU or the distribution has no recent enough PyTorch; otherwise the distribution's own
# CPU pair (python3-torch, python3-torchvision: Debian 13 and later), built for the system's Python and numpy.
# (PyPI's Linux torch wheels are CUDA builds that pull about 3 GB of NVIDIA libraries; the CPU wheels live on
# download.pytorch.org only.)
# Environment overrides:
#   RSREFSEG2_TORCH="torch==X torchvision==Y"  a pip pair to install instead (e.g. with a CPU index in PIP_INDEX_URL)
#   RSREFSEG2_EXTRAS="train,dev,cluster"         the project extras to install
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_TORCH="torch==2.14.1 torchvision==0.29.1"
DISTRO_TORCH_MIN=2.1  # the floor in backend/requirements.txt
EXTRAS=${RSREFSEG2_EXTRAS:-"train,dev,cluster"}  # cluster: Ray, for batch --ray and its tests
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
    python3-qgis qgis-providers qgis xvfb python3-venv python3-numpy >/dev/null
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

step "numpy: the system's, never one of the venv's own"
SYSTEM_NUMPY=$("$SYSTEM_PYTHON" -c "import numpy; print(numpy.__version__)")
# An older setup may have left a numpy inside the venv, shadowing the system's: remove it.
if "$VENV/bin/python" -c "import numpy, sys; sys.exit(not numpy.__file__.startswith(sys.prefix))" 2>/dev/null; then
  "$VENV/bin/python" -m pip uninstall -q -y numpy
  echo "removed the venv's own numpy"
fi
SYSTEM_PINS=$VENV/system-pins.txt
echo "numpy==$SYSTEM_NUMPY" > "$SYSTEM_PINS"
echo "numpy $SYSTEM_NUMPY from $("$VENV/bin/python" -c 'import numpy; print(numpy.__file__)'); pip constrained to it"
# --prefer-binary: never pick a newer source release over a wheel (nothing here is compiled).
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check --prefer-binary -c "$SYSTEM_PINS")

has_gpu() { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; }
distro_torch() {  # the distribution's candidate python3-torch version, when it has a recent enough pair
  command -v apt-cache >/dev/null || return 0
  local torch vision
  torch=$(apt-cache policy python3-torch 2>/dev/null | awk '/Candidate:/ {print $2}')
  vision=$(apt-cache policy python3-torchvision 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -n "$torch" ] && [ "$torch" != "(none)" ] && [ -n "$vision" ] && [ "$vision" != "(none)" ] \
     && dpkg --compare-versions "${torch#*:}" ge "$DISTRO_TORCH_MIN"; then
    echo "$torch"
  fi
}
if [ -n "${RSREFSEG2_TORCH:-}" ]; then
  TORCH_SPEC=$RSREFSEG2_TORCH
elif ! has_gpu && [ -n "$(distro_torch)" ]; then
  TORCH_SPEC=distribution
else
  TORCH_SPEC=$PIP_TORCH
fi

step "torch and torchvision, installed together and first ($TORCH_SPEC)"
if [ "$TORCH_SPEC" = distribution ]; then
  if dpkg -s python3-torch python3-torchvision >/dev/null 2>&1; then
    echo "present: python3-torch $(dpkg-query -W -f '${Version}' python3-torch)"
  else
    echo "installing the distribution's CPU build: python3-torch $(distro_torch), python3-torchvision"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      python3-torch python3-torchvision >/dev/null
  fi
# shellcheck disable=SC2086  # TORCH_SPEC is a list of requirement specifiers
elif "$VENV/bin/python" - $TORCH_SPEC <<'EOF' 2>/dev/null
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
fingerprint=$(cat pyproject.toml backend/requirements.txt "$SYSTEM_PINS"; echo "$EXTRAS")
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
