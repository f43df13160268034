"""Device detection, target fallback, and the OpenVINO runtime (skipped where openvino is not installed)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtune.cli import run_cli
from cvtune.errors import RuntimeUnavailable, UsageError
from cvtune.runtimes import RUNTIMES, make_runtime
from cvtune.runtimes.devices import cpu_features, cpu_has_vnni, cpu_info, detect, parse_cpuinfo, resolve_target
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


# /proc/cpuinfo excerpts as the kernel writes them (flags abridged). The parser reads the first processor block:
# ICELAKE's second block must be ignored.
ICELAKE = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd \
avx512bw avx512vl avx512ifma avx512vbmi avx512_vbmi2 avx512_vnni avx512_bitalg avx512_vpopcntdq
bogomips\t: 5799.97

processor\t: 1
model name\t: Some Other CPU
flags\t\t: fpu sse sse2
"""
ALDERLAKE = """processor\t: 0
model name\t: 12th Gen Intel(R) Core(TM) i7-1260P
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx_vnni umip pku ospke waitpkg gfni vaes
"""
HASWELL = """processor\t: 0
model name\t: Intel(R) Xeon(R) CPU E5-2676 v3 @ 2.40GHz
flags\t\t: fpu vme sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 hypervisor
"""
GRAVITON2 = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


@pytest.mark.parametrize("text, model, features, vnni", [
    (ICELAKE, "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
     ("SSE4.2", "AVX", "AVX2", "FMA", "F16C", "AVX-512F", "AVX-512BW", "AVX-512VL", "AVX-512 VNNI"), True),
    (ALDERLAKE, "12th Gen Intel(R) Core(TM) i7-1260P", ("SSE4.2", "AVX", "AVX2", "FMA", "F16C", "AVX-VNNI"), True),
    (HASWELL, "Intel(R) Xeon(R) CPU E5-2676 v3 @ 2.40GHz", ("SSE4.2", "AVX", "AVX2", "FMA", "F16C"), False),
    (GRAVITON2, "", ("NEON", "NEON dot-product"), None),
])
def test_cpuinfo_parser_on_real_cpuinfo_text(text: str, model: str, features: tuple[str, ...],
                                             vnni: bool | None) -> None:
    parsed_model, flags = parse_cpuinfo(text)
    assert parsed_model == model
    assert cpu_features(flags) == features
    machine = "aarch64" if "Features" in text else "x86_64"
    assert cpu_has_vnni(text, machine=machine) is vnni


def test_vnni_is_unknown_without_x86_flags() -> None:
    assert cpu_has_vnni("", machine="x86_64") is None  # /proc/cpuinfo unreadable
    assert cpu_has_vnni(ICELAKE, machine="aarch64") is None


# OpenCV's CpuFeatures ids (core/cvdef.h; not exported to Python): an independent, CPUID-based view of the CPU.
OPENCV_CPU_IDS = {"SSE4.2": 7, "AVX": 10, "AVX2": 11, "FMA": 12, "AVX-512F": 13, "AVX-512BW": 14, "AVX-512VL": 21,
                  "AVX-512 VNNI": 23}


def test_this_machines_features_agree_with_opencvs_cpuid_probe() -> None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the OpenCV ids compared here are x86 features")
    info = cpu_info()
    for name, cv_id in OPENCV_CPU_IDS.items():
        assert (name in info.features) == cv2.checkHardwareSupport(cv_id), name
    assert cpu_has_vnni() is info.has_vnni
    if cv2.checkHardwareSupport(OPENCV_CPU_IDS["AVX-512 VNNI"]):
        assert info.has_vnni
    from cvtune.quantize import StaticConfig
    from cvtune.quantize import cpu_has_vnni as quantize_view

    assert quantize_view is cpu_has_vnni  # one VNNI check, not a second parser
    # 7-bit weights exactly where u8 x s8 products can saturate: an x86 CPU without VNNI
    assert StaticConfig(format="qoperator").resolved().reduce_range is (cpu_has_vnni() is False)


def test_devices_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["devices", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data.pop("schema") == "cvtune-devices/1" and data.pop("version")
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
    from cvtune.runtimes.opencv import reference_engine

    engine = reference_engine()  # the classic engine where this OpenCV has one (5.1 has not)
    wanted = make_runtime("opencv", engine=engine, target=target)
    with pytest.raises(RuntimeUnavailable, match=rf"(?i){target}.*allow the CPU fallback"):
        resolve_target(wanted, fallback=False)
    used, note = resolve_target(wanted, fallback=True)
    assert used.target == "cpu" and used.engine == engine
    assert note and target in note and f"using opencv:{engine}/cpu" in note


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
    assert "openvino" not in proc.stdout and "'opencv', 'ort'" in proc.stdout


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
