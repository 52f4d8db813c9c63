""""Set up backend…": a private venv under the QGIS profile with the right PyTorch build and the backend's needs.

The steps are data (``setup_steps``), run by ``ProcessDialog`` with pip's output shown live and a Cancel
button. PyTorch comes first and alone: the CUDA build when ``nvidia-smi`` lists a GPU, the CPU build otherwise.

Nothing half-built is ever used: the environment is built apart, in ``<venv>.partial``, and only once the new
Python imports our packages is it moved to ``<venv>`` (the one it replaces kept as ``<venv>.replaced`` until the
next set-up) and written to the Worker Python setting. Before the large downloads the package indexes are asked
once, quickly (no retries, a short timeout), so that a computer without network is told so within seconds, with
what to do offline, instead of after minutes of retries. pip's full log goes to a file the failure names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .i18n import tr
from .paths import backend_root, venv_python
from .process_dialog import Step

TORCH = ("torch==2.14.1", "torchvision==0.29.1")  # the pair scripts/setup.sh installs and the tests run on
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu130"  # Linux wheels on PyPI are CUDA builds already
PROBE_TIMEOUT_S = 5  # seconds pip waits for an index before the set-up says there is no network
INSTALL_TIMEOUT_S = 30  # pip's socket timeout while downloading; no retries: a dead connection fails at once
CHECK_IMPORTS = "import backend, torch, torchvision, numpy, rasterio, open_clip, segment_anything"
OFFLINE_ADVICE = ("Without network: choose an existing Python that has the project installed in Plugins → "
                  "RSRefSeg 2 → Settings… → Worker Python, or run scripts/setup.sh on a computer with network "
                  "access and choose its Python.")


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


def staging_dir(venv_dir: Path) -> Path:
    """Where the environment for ``venv_dir`` is built until it works (never a Worker Python)."""
    return venv_dir.with_name(venv_dir.name + ".partial")


def replaced_dir(venv_dir: Path) -> Path:
    """Where the environment that a new one replaced is kept until the next set-up."""
    return venv_dir.with_name(venv_dir.name + ".replaced")


def install_environment(venv_dir: Path) -> Path:
    """Move the checked environment from ``staging_dir(venv_dir)`` to ``venv_dir``; returns its Python.

    The previous ``venv_dir`` becomes ``replaced_dir(venv_dir)`` (removed by the next set-up). Two renames in
    one folder: when the second fails, the first is undone, so ``venv_dir`` is the old or the new environment.

    Raises:
        OSError: a rename failed (e.g. on Windows while a program still runs from the old environment).
    """
    staged, replaced = staging_dir(venv_dir), replaced_dir(venv_dir)
    if venv_dir.exists():
        if replaced.exists():
            shutil.rmtree(replaced)
        venv_dir.rename(replaced)
    try:
        staged.rename(venv_dir)
    except OSError:
        if replaced.exists() and not venv_dir.exists():
            replaced.rename(venv_dir)
        raise
    return venv_python(venv_dir)


def first_pip_error(output: str) -> str:
    """The first ``ERROR:`` line of pip's output (the cause; pip's last line is often a later consequence),
    else its last non-empty line, else ""."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("ERROR:")), lines[-1] if lines else "")


def explain_unreachable(log_file: Path) -> Callable[[str], str]:
    """What a failed index probe means, from pip's output and the log's "Could not fetch URL" lines."""

    def explain(output: str) -> str:
        log = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
        unreachable = re.search(r"Could not fetch URL (\S+?):? ", log)
        if unreachable is not None or "connection error" in output.lower():
            where = unreachable.group(1) if unreachable is not None else tr("the package index")
            cause = tr("No package index is reachable from this computer ({where} could not be reached; pip "
                       "waited {s} s, without retries), so Set up backend… cannot download PyTorch.").format(
                           where=where, s=PROBE_TIMEOUT_S)
        else:
            cause = tr("The package index offers no PyTorch for this Python ({error}).").format(
                error=first_pip_error(output) or tr("pip printed nothing"))
        unchanged = tr("The Worker Python setting is unchanged; pip's log: {log}").format(log=log_file)
        return " ".join((cause, tr(OFFLINE_ADVICE), unchanged))

    return explain


def explain_pip_failure(log_file: Path) -> Callable[[str], str]:
    """A failed install: pip's first real error, the log, and that the Worker Python was left as it was."""

    def explain(output: str) -> str:
        return tr("pip failed: {error} The Worker Python setting is unchanged. pip's full log: {log}").format(
            error=first_pip_error(output) or tr("(no error line)"), log=log_file)

    return explain


def setup_steps(*, venv_dir: Path, gpu: bool, log_file: Path, platform: str = sys.platform,
                python: str | None = None, adopt: Callable[[], str] | None = None) -> list[Step]:
    """The commands that build the private venv apart, check it and (``adopt``) put it in place.

    Args:
        venv_dir: where the venv goes once it works (``paths.private_venv_dir(profile)``); it is built in
            ``staging_dir(venv_dir)``.
        gpu: install the CUDA build of torch.
        log_file: where pip writes its full log (appended to by every pip step).
        platform: ``sys.platform`` of the target (decides the torch index).
        python: the interpreter that creates the venv (default: ``base_python()``).
        adopt: runs once the staged Python imports our packages (``install_environment`` and the setting).

    Returns:
        removal of an earlier attempt, venv creation, a quick probe of the package indexes, pip upgrade,
        torch + torchvision, the backend requirements, an import check with the new Python (then ``adopt``).
    """
    staged = staging_dir(venv_dir)
    staged_py = str(venv_python(staged))
    common = ("--disable-pip-version-check", "--retries", "0", "--log", str(log_file))
    pip = ("-m", "pip", "install", *common, "--timeout", str(INSTALL_TIMEOUT_S), "--progress-bar", "off")
    probe = ("-m", "pip", "index", "versions", *common, "--timeout", str(PROBE_TIMEOUT_S))
    if platform == "darwin":
        index: tuple[str, ...] = ()  # macOS wheels on PyPI (MPS); there is no CUDA build
    elif gpu:
        index = ("--index-url", CUDA_INDEX_WINDOWS) if platform.startswith("win") else ()
    else:
        index = ("--index-url", CPU_INDEX)
    build = tr("CUDA") if gpu and platform != "darwin" else tr("CPU")
    unreachable = explain_unreachable(log_file)
    pip_failed = explain_pip_failure(log_file)
    probes = [Step(tr("Asking the package index for PyTorch"), staged_py, (*probe, "torch", *index),
                   explain=unreachable)]
    if index:  # the requirements come from pip's own configured index: ask it too
        probes.append(Step(tr("Asking the package index for the backend's requirements"), staged_py,
                           (*probe, "rasterio"), explain=unreachable))
    root = str(backend_root())
    return [
        Step(tr("Removing what an earlier set-up left"), python or base_python(),
             ("-c", "import shutil, sys; [shutil.rmtree(p, ignore_errors=True) for p in sys.argv[1:]]",
              str(staged), str(replaced_dir(venv_dir)))),
        Step(tr("Creating the environment in {path}").format(path=staged), python or base_python(),
             ("-m", "venv", str(staged))),
        *probes,
        Step(tr("Updating pip"), staged_py, (*pip, "--upgrade", "pip"), explain=pip_failed),
        Step(tr("Installing PyTorch ({build} build)").format(build=build), staged_py, (*pip, *TORCH, *index),
             explain=pip_failed),
        Step(tr("Installing the backend's requirements"), staged_py,
             (*pip, "-r", str(backend_root() / "backend" / "requirements.txt")), explain=pip_failed),
        Step(tr("Checking the installation"), staged_py,
             ("-c", f"{CHECK_IMPORTS}; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"),
             cwd=root, pythonpath=root, explain=explain_check_failure(staged), on_success=adopt),
    ]


def explain_check_failure(staged: Path) -> Callable[[str], str]:
    """The new Python does not import our packages: it stays apart and is not used."""

    def explain(output: str) -> str:
        return tr("The new environment does not work ({error}); it is not used and stays apart in {path} (the "
                  "next Set up backend… removes it). The Worker Python setting is unchanged.").format(
                      error=first_pip_error(output) or tr("no output"), path=staged)

    return explain
