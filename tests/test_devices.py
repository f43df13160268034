"""Device detection, target fallback, and the OpenVINO runtime (skipped where openvino is not installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtune.cli import run_cli
from cvtune.errors import RuntimeUnavailable, UsageError
from cvtune.runtimes import RUNTIMES, make_runtime
from cvtune.runtimes.devices import cpu_info, detect, resolve_target
from cvtune.runtimes.opencv import target_status


def test_detect_reports_this_machine() -> None:
    report = detect()
    assert report.cpu.logical_cores >= report.cpu.usable_cores >= 1
    assert report.cpu.physical_cores >= 1
    assert report.opencv["version"] == cv2.__version__
    assert report.opencv["targets"]["cpu"]["available"] is True
    assert "CPUExecutionProvider" in report.ort["providers"]
    for name, status in report.opencv["targets"].items():
        assert status["available"] or status["reason"], f"target {name} is unavailable without a reason"


def test_cpu_features_come_from_proc_cpuinfo() -> None:
    flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("flags")), None)
    if flags is None:
        pytest.skip("no x86 /proc/cpuinfo flags here")
    info = cpu_info()
    assert ("AVX2" in info.features) == ("avx2" in flags)
    assert ("AVX-512F" in info.features) == ("avx512f" in flags)
    assert info.has_vnni == ("avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags)


def test_devices_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["devices", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"cpu", "opencv", "opencl_devices", "cuda_devices", "ort", "openvino"}
    assert data["cpu"]["usable_cores"] >= 1
    assert run_cli(["devices"]) == 0
    assert "CPU features" in capsys.readouterr().out


def _absent_opencv_target() -> str:
    for target in ("cuda", "opencl"):
        if not target_status(target)[0]:
            return target
    pytest.skip("this machine has CUDA and OpenCL: no absent target to test with")


def test_absent_target_is_an_error_naming_it_unless_fallback_is_allowed() -> None:
    target = _absent_opencv_target()
    wanted = make_runtime("opencv", engine="classic", target=target)
    with pytest.raises(RuntimeUnavailable, match=rf"(?i){target}.*--fallback"):
        resolve_target(wanted, fallback=False)
    used, note = resolve_target(wanted, fallback=True)
    assert used.target == "cpu" and used.engine == "classic"
    assert note and target in note and "using opencv:classic/cpu" in note


def test_available_target_needs_no_fallback() -> None:
    runtime = make_runtime("ort", threads=1)
    assert resolve_target(runtime, fallback=False) == (runtime, None)


def test_absent_ort_provider_falls_back_to_cpu_only_when_allowed() -> None:
    from cvtune.runtimes.ort import available_providers

    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("CUDA provider present")
    with pytest.raises(RuntimeUnavailable, match="CUDAExecutionProvider"):
        resolve_target(make_runtime("ort", provider="cuda"))
    used, note = resolve_target(make_runtime("ort", provider="cuda"), fallback=True)
    assert used.provider == "cpu" and "--fallback" in note


def test_bench_with_an_absent_target(cls_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = _absent_opencv_target()
    args = ["bench", str(cls_model), "--target", target, "--warmup", "0", "--min-runs", "1", "--min-time", "0",
            "--json"]
    assert run_cli(args) == 2
    assert "--fallback" in capsys.readouterr().err
    assert run_cli([*args, "--engine", "new", "--fallback"]) == 0
    captured = capsys.readouterr()
    assert "using opencv:new/cpu" in captured.err
    assert json.loads(captured.out)["runtime"]["target"] == "cpu"


def test_openvino_module_stays_out_of_the_registry_when_the_package_is_absent() -> None:
    code = ("import sys; sys.modules['openvino'] = None\n"
            "import cvtune.runtimes as r\n"
            "assert 'openvino' not in r.RUNTIMES, r.RUNTIMES\n"
            "print(sorted(r.RUNTIMES))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['opencv', 'ort']"


# ---------------------------------------------------------------------------------------------- OpenVINO

def test_openvino_runs_the_classifier_like_ort(cls_model: Path) -> None:
    pytest.importorskip("openvino")
    assert "openvino" in RUNTIMES
    x = np.random.default_rng(0).random((2, 3, 48, 192), dtype=np.float32)
    reference = make_runtime("ort", threads=1).open(cls_model).run(x)[0]
    for hint in ("latency", "throughput"):
        session = make_runtime("openvino", threads=1, hint=hint).open(cls_model)
        first = session.run(x)[0]
        session.run(x[::-1].copy())  # a second call must not overwrite the first result
        np.testing.assert_allclose(first, reference, atol=1e-4)
        session.close()


def test_openvino_settings_validate_and_absent_devices_fall_back(cls_model: Path) -> None:
    pytest.importorskip("openvino")
    with pytest.raises(UsageError, match="hint"):
        make_runtime("openvino", hint="fastest")
    with pytest.raises(UsageError, match="precision"):
        make_runtime("openvino", precision="int4")
    from cvtune.runtimes.openvino import available_devices

    if "NPU" in available_devices():
        pytest.skip("this machine has an NPU")
    wanted = make_runtime("openvino", device="NPU")
    with pytest.raises(RuntimeUnavailable, match="NPU"):
        resolve_target(wanted)
    used, note = resolve_target(wanted, fallback=True)
    assert used.device == "CPU" and "NPU" in note
    assert used.open(cls_model).run(np.zeros((1, 3, 48, 192), np.float32))[0].shape == (1, 2)
