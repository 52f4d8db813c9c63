""""Set up backend…": a private venv under the QGIS profile with the right PyTorch build and the backend's needs.

The steps are data (``setup_steps``), run by ``ProcessDialog`` with pip's output shown live and a Cancel
button. PyTorch comes first and alone: the CUDA build when ``nvidia-smi`` lists a GPU, the CPU build otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .i18n import tr
from .paths import backend_root, venv_python
from .process_dialog import Step

TORCH = ("torch==2.14.1", "torchvision==0.29.1")  # the pair scripts/setup.sh installs and the tests run on
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu130"  # Linux wheels on PyPI are CUDA builds already


def detect_gpu(timeout: float = 5.0) -> bool:
    """True when ``nvidia-smi -L`` lists at least one GPU (False when it is missing, fails or hangs)."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return False
    try:
        listed = subprocess.run([program, "-L"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def base_python() -> str:
    """A Python that can create venvs: QGIS's own interpreter (``sys.executable`` is QGIS itself on Windows)."""
    candidates = [Path(sys.exec_prefix) / "python.exe"] if os.name == "nt" else [Path(sys.executable)]
    candidates += [Path(found) for found in (shutil.which("python3"), shutil.which("python")) if found]
    for candidate in candidates:
        if candidate.is_file() and "python" in candidate.name.lower():
            return str(candidate)
    return "python3"


def setup_steps(*, venv_dir: Path, gpu: bool, platform: str = sys.platform, python: str | None = None) -> list[Step]:
    """The commands that create and fill the private venv.

    Args:
        venv_dir: where the venv goes (``paths.private_venv_dir(profile)``).
        gpu: install the CUDA build of torch.
        platform: ``sys.platform`` of the target (decides the torch index).
        python: the interpreter that creates the venv (default: ``base_python()``).

    Returns:
        venv creation, pip upgrade, torch + torchvision, the backend requirements, an import check.
    """
    venv_py = str(venv_python(venv_dir))
    pip = ("-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off")
    if platform == "darwin":
        index: tuple[str, ...] = ()  # macOS wheels on PyPI (MPS); there is no CUDA build
    elif gpu:
        index = ("--index-url", CUDA_INDEX_WINDOWS) if platform.startswith("win") else ()
    else:
        index = ("--index-url", CPU_INDEX)
    build = tr("CUDA") if gpu and platform != "darwin" else tr("CPU")
    return [
        Step(tr("Creating the environment in {path}").format(path=venv_dir), python or base_python(),
             ("-m", "venv", str(venv_dir))),
        Step(tr("Updating pip"), venv_py, (*pip, "--upgrade", "pip")),
        Step(tr("Installing PyTorch ({build} build)").format(build=build), venv_py, (*pip, *TORCH, *index)),
        Step(tr("Installing the backend's requirements"), venv_py,
             (*pip, "-r", str(backend_root() / "backend" / "requirements.txt"))),
        Step(tr("Checking the installation"), venv_py,
             ("-c", "import torch, open_clip, segment_anything, rasterio; print('torch', torch.__version__, "
                    "'cuda', torch.cuda.is_available())")),
    ]
