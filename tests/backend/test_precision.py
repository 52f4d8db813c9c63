"""Compute precision per device (issue 27): ``auto`` = bf16 where the hardware computes it natively, fp32 elsewhere.

The CPU flags are read from a real cpuinfo-format file that each test writes (the flags source is a parameter of our
code, not a mock of it); the machine's own ``/proc/cpuinfo`` is used where the test says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.cli.info import collect
from backend.errors import BackendError
from backend.loading import describe, load_predictor
from backend.model.device import choose_precision, cpu_flags, native_cpu_bf16
from backend.protocol import Load, ProtocolError, decode

ROOT = Path(__file__).resolve().parents[2]
AVX2_ONLY = "fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2"
SAPPHIRE = AVX2_ONLY + " avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8"
CPU = torch.device("cpu")


def _cpuinfo(folder: Path, flags: str | None) -> Path:
    """A two-processor /proc/cpuinfo with ``flags`` (None: no flags line, like a non-x86 kernel's)."""
    lines = []
    for index in range(2):
        lines += [f"processor\t: {index}", "vendor_id\t: GenuineIntel", "model name\t: Test CPU"]
        if flags is not None:
            lines.append(f"flags\t\t: {flags}")
        lines.append("")
    path = folder / f"cpuinfo-{abs(hash(flags))}"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_auto_is_bf16_on_a_cpu_with_native_bf16_and_fp32_without(tmp_path: Path) -> None:
    native = _cpuinfo(tmp_path, SAPPHIRE)
    plain = _cpuinfo(tmp_path, AVX2_ONLY)
    assert "avx512_bf16" in cpu_flags(native) and "avx512_bf16" not in cpu_flags(plain)
    precision, reason = choose_precision(CPU, "auto", native)
    assert precision == "bf16" and "amx_bf16" in reason and "avx512_bf16" in reason
    precision, reason = choose_precision(CPU, "auto", plain)
    assert precision == "fp32" and "emulated" in reason
    assert choose_precision(CPU, "auto", _cpuinfo(tmp_path, AVX2_ONLY + " avx512_bf16"))[0] == "bf16"
    assert choose_precision(CPU, "auto", _cpuinfo(tmp_path, AVX2_ONLY + " amx_bf16"))[0] == "bf16"


def test_asked_precisions_are_kept_and_unknown_ones_refused(tmp_path: Path) -> None:
    plain = _cpuinfo(tmp_path, AVX2_ONLY)
    assert choose_precision(CPU, "bf16", plain) == ("bf16", "requested")
    assert choose_precision(CPU, "FP32", _cpuinfo(tmp_path, SAPPHIRE)) == ("fp32", "requested")
    assert choose_precision(torch.device("mps"), "auto", plain)[0] == "fp32"
    assert choose_precision(torch.device("cuda"), "auto", plain)[0] == "bf16"
    with pytest.raises(BackendError) as err:
        choose_precision(CPU, "fp16", plain)
    assert err.value.code == "bad_request" and "fp16" in str(err.value)


def test_without_cpu_flags_onednn_decides(tmp_path: Path) -> None:
    """No flags line (or no file): torch's own oneDNN check answers; whatever it says, the reason names it."""
    for source in (_cpuinfo(tmp_path, None), tmp_path / "absent"):
        native, reason = native_cpu_bf16(source)
        assert native == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        assert "oneDNN" in reason


def test_info_reports_the_precision_from_the_cpu_flags(tmp_path: Path) -> None:
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("auto picks the accelerator here, whatever the CPU flags")
    assert collect(_cpuinfo(tmp_path, SAPPHIRE))["precision"] == "bf16"
    info = collect(_cpuinfo(tmp_path, AVX2_ONLY))
    assert info["precision"] == "fp32" and "avx512_bf16" in info["precision_reason"]


def test_info_json_has_a_top_level_precision_for_this_machine() -> None:
    proc = subprocess.run([sys.executable, "-m", "backend", "info", "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    expected = choose_precision(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if not torch.backends.mps.is_available():
        assert (info["precision"], info["precision_reason"]) == expected


def test_the_predictor_runs_in_the_precision_asked() -> None:
    view = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    masks = {}
    for precision in ("fp32", "bf16"):
        predictor = load_predictor(config="tiny", device="cpu", precision=precision)
        assert predictor.precision == precision and describe(predictor).endswith(precision)
        predictor.set_image(view)
        masks[precision] = predictor.predict("the large white tank").probs
    assert masks["fp32"].shape == masks["bf16"].shape
    assert np.abs(masks["fp32"] - masks["bf16"]).max() < 0.1  # same model, bf16 rounding only
    with pytest.raises(BackendError) as err:
        load_predictor(config="tiny", device="cpu", precision="half")
    assert err.value.code == "bad_request" and "auto, fp32 or bf16" in err.value.hint


def test_the_load_request_carries_the_precision() -> None:
    assert decode('{"type":"load","id":"p","v":1,"config":"tiny","precision":"bf16"}') == Load(
        id="p", config="tiny", precision="bf16")
    assert Load(id="q", config="tiny").precision == "auto"
    with pytest.raises(ProtocolError, match="load.precision"):
        Load(id="r", config="tiny", precision="fp16")
