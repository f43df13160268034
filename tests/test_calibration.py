"""The one calibration stream (cvtune.data.calibration): what pruning, quantization and sensitivity calibrate on.
The same folder, count and task give the same tensors everywhere; tensors are read lazily, one image at a time;
unreadable images are skipped and counted; bad needs are refused with a line that says how to fix them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cvtune.data.calibration as calibration_module
from cvtune.cli import run_cli
from cvtune.data.calibration import (
    CalibrationNeed,
    CalibrationSet,
    calibration_set,
    downscale,
    random_calibration,
)
from cvtune.data.loaders import load_images
from cvtune.errors import DatasetError, UsageError
from cvtune.zoo import Preprocessing


def conv_model(path: Path, height: int | str = 16, width: int | str = 16) -> Path:
    """x(1,3,H,W) -> conv0 (3->8, 3x3) -> relu0 -> conv1 (8->8, 3x3) -> relu1 -> conv2 (8->2, 3x3) -> y.
    String H/W make the input dynamic (a fully convolutional model)."""
    rng = np.random.default_rng(0)
    shapes = {"w0": (8, 3, 3, 3), "w1": (8, 8, 3, 3), "w2": (2, 8, 3, 3)}
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n) for n, s in shapes.items()]
    nodes, x = [], "x"
    for i in range(3):
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}", kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))
        x = f"c{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             [1, 3, height, width])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 2, height, width])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def write_images(folder: Path, n: int, size: tuple[int, int] = (24, 32), *, ext: str = ".png") -> Path:
    """`n` smooth colour images (a small random pattern blown up), named img_000... so the sorted order is known."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img_{i:03d}{ext}"), cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC))
    return folder


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return conv_model(tmp_path / "conv.onnx")


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    return write_images(tmp_path / "images", 6)


# ---------------------------------------------------------------------------------------------- one stream


def test_prune_quantize_and_sensitivity_calibrate_on_the_same_tensors(model, images, tmp_path, capsys, monkeypatch):
    seen: dict[str, list[np.ndarray]] = {}
    original = calibration_module.calibration_set

    def recording(*args, **kwargs) -> CalibrationSet:
        result = original(*args, **kwargs)
        seen[command] = result.tensors()
        return result

    monkeypatch.setattr(calibration_module, "calibration_set", recording)
    runs = {
        "prune": ["prune", str(model), "-o", str(tmp_path / "p.onnx"), "--method", "channel", "--ratio", "0.5",
                  "--calib", str(images), "--calib-size", "4"],
        "quantize": ["quantize", str(model), "-o", str(tmp_path / "q.onnx"), "--calib", str(images),
                     "--calib-size", "4", "--no-probe"],
        "prune --task fidelity": ["prune", str(model), "-o", str(tmp_path / "pf.onnx"), "--method", "channel",
                                  "--ratio", "0.5", "--calib", str(images), "--calib-size", "4", "--task",
                                  "fidelity"],
        "sensitivity": ["sensitivity", str(model), "--data", str(images), "--method", "channel", "--levels", "0.5",
                        "--calib", str(images), "--calib-size", "4", "-o", str(tmp_path / "s.json")],
    }
    reports = {}
    for command, args in runs.items():
        assert run_cli([*args, "--json"]) == 0, capsys.readouterr().err
        reports[command] = json.loads(capsys.readouterr().out)

    # no task: prune and quantize read the same 4 images into the same tensors
    assert len(seen["prune"]) == len(seen["quantize"]) == 4
    assert all(np.array_equal(a, b) for a, b in zip(seen["prune"], seen["quantize"], strict=True))
    prune_calib, quant_calib = reports["prune"]["calibration"], reports["quantize"]["calibration"]
    assert prune_calib["images"] == quant_calib["images"] == 4
    assert prune_calib["source"] == quant_calib["source"] == str(images)
    # the same task (sensitivity's default, fidelity): prune and sensitivity agree too
    assert all(np.array_equal(a, b) for a, b in zip(seen["prune --task fidelity"], seen["sensitivity"], strict=True))


def test_images_are_spread_evenly_over_the_sorted_folder(model, tmp_path):
    folder = write_images(tmp_path / "ten", 10)
    calib = calibration_set(model, folder, CalibrationNeed(count=4))
    assert [p.name for p in calib.stream.paths] == ["img_000.png", "img_003.png", "img_006.png", "img_009.png"]
    assert len(calib) == 4 and calib.source == str(folder)
    again = calibration_set(model, load_images(folder), CalibrationNeed(count=4))  # a loaded Dataset: the same
    assert all(np.array_equal(a, b) for a, b in zip(calib, again, strict=True))


def test_without_a_task_images_get_the_models_preprocessing_and_its_resize(model, images):
    calib = calibration_set(model, images, CalibrationNeed(count=1))
    (tensor,) = calib.tensors()
    assert tensor.shape == (1, 3, 16, 16) and tensor.dtype == np.float32
    assert calib.preprocessing.source == "guessed" and calib.to_dict()["preprocessing_source"] == "guessed"
    image = cv2.imread(str(sorted(images.iterdir())[0]))
    rgb = cv2.resize(image, (16, 16))[:, :, ::-1] / np.float32(255)  # the spec's stretch, as inference does
    expected = (rgb - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])  # guessed: ImageNet
    np.testing.assert_allclose(tensor[0], expected.transpose(2, 0, 1), atol=1e-5)
    assert calibration_set(model, images, CalibrationNeed(count=1), input_shape=(1, 3, 8, 12)).head(1)[0].shape \
        == (1, 3, 8, 12)


# ---------------------------------------------------------------------------------------------- streaming


def test_the_reader_streams_one_image_at_a_time(model, tmp_path, monkeypatch):
    folder = write_images(tmp_path / "many", 200, (20, 20))
    calib = calibration_set(model, folder, CalibrationNeed(count=200))
    reads: list[Path] = []
    real_read = calibration_module.read_image_or_warn
    monkeypatch.setattr(calibration_module, "read_image_or_warn", lambda path: reads.append(path) or real_read(path))

    reader = calib.reader()
    alive: list[weakref.ref] = []
    while (batch := reader.get_next()) is not None:
        alive.append(weakref.ref(batch["x"]))
        assert len(reads) == len(alive)  # the k-th tensor needed the k-th image read, no more
        assert sum(ref() is not None for ref in alive) == 1  # only the tensor in hand is alive
        del batch
    assert len(alive) == 200 and len(reader) == 200
    reader.rewind()
    assert reader.get_next()["x"].shape == (1, 3, 16, 16) and len(reads) == 201


def test_calibrating_on_200_large_images_never_holds_them_all(tmp_path):
    model = conv_model(tmp_path / "big.onnx", 640, 640)
    folder = write_images(tmp_path / "big", 200, (640, 640), ext=".jpg")
    script = textwrap.dedent(f"""
        import json, resource
        from cvtune.data.calibration import CalibrationNeed, calibration_set
        calibration_set({str(model)!r}, {str(folder)!r}, CalibrationNeed(count=2)).tensors()  # warm up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        calib = calibration_set({str(model)!r}, {str(folder)!r}, CalibrationNeed(count=200))
        reader, count, nbytes = calib.reader(), 0, 0
        while (batch := reader.get_next()) is not None:
            count, nbytes = count + 1, nbytes + batch["x"].nbytes
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        print(json.dumps({{"count": count, "nbytes": nbytes, "growth": growth}}))
    """)
    src = Path(calibration_module.__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "OPENCV_LOG_LEVEL": "FATAL"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["count"] == 200 and result["nbytes"] == 200 * 3 * 640 * 640 * 4  # 983 MB if held at once
    assert result["growth"] < 0.1 * result["nbytes"], result  # measured: a few MB


PEAK_RSS = """
def peak_reset():  # VmHWM belongs to this process image (ru_maxrss would carry the parent's peak across exec)
    open("/proc/self/clear_refs", "w").write("5")
    return status("VmRSS")
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key + ":"))
"""


@pytest.mark.parametrize("method", ["entropy", "auto"])
def test_int8_calibration_on_200_images_holds_one_images_activations_not_all(tmp_path, method):
    """ORT's histogram calibrators (entropy, percentile) keep every activation of every image until the end; cvtune
    streams the images through the same collectors one at a time. Peak RSS while quantizing 200 images stays far
    below what holding their activations would take (measured: ORT's own entropy calibrator grew by 316 MB for 25
    and 657 MB for 50 of these images; cvtune's by 2 MB for 200)."""
    model = conv_model(tmp_path / "big.onnx", 128, 128)
    folder = write_images(tmp_path / "big", 200, (128, 128), ext=".jpg")
    script = PEAK_RSS + textwrap.dedent(f"""
        import json
        from cvtune.data.calibration import CalibrationNeed, calibration_set
        from cvtune.quantize import StaticConfig, quantize
        from cvtune.quantize.ranges import collect_histograms
        small = calibration_set({str(model)!r}, {str(folder)!r}, CalibrationNeed(count=2))
        quantize({str(model)!r}, {str(tmp_path / "warm.onnx")!r}, StaticConfig(calibrate={method!r}),
                 calibration=small, probe=False)  # warm up: imports, ORT arenas
        tensors = collect_histograms({str(model)!r}, small.head(1)).tensors()
        before = peak_reset()
        calib = calibration_set({str(model)!r}, {str(folder)!r}, CalibrationNeed(count=200))
        result = quantize({str(model)!r}, {str(tmp_path / "q.onnx")!r}, StaticConfig(calibrate={method!r}),
                          calibration=calib, probe=False)
        growth = status("VmHWM") - before
        # what ORT's own calibrator would hold: every calibrated activation of every image (8 channels of 128x128
        # float32 per conv/relu output, 3 for the input, 2 for the last conv)
        channels = {{"x": 3, "c0": 8, "r0": 8, "c1": 8, "r1": 8, "c2": 2}}
        held = 200 * sum(channels[t] for t in tensors if t in channels) * 128 * 128 * 4
        one = held // 200
        print(json.dumps({{"growth": growth, "held": held, "one": one, "tensors": sorted(tensors),
                          "notes": result.notes, "images": result.calibration["images"]}}))
    """)
    src = Path(calibration_module.__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "OPENCV_LOG_LEVEL": "FATAL"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["images"] == 200 and any("200 images, streamed" in n for n in result["notes"])
    assert len(result["tensors"]) >= 4 and result["held"] > 3e8  # 0.4 GB if held at once
    assert result["growth"] < 0.1 * result["held"], result
    assert result["growth"] < 20 * result["one"], result  # a few images' worth at most, whatever the count


def test_random_calibration_gives_the_same_noise_on_every_pass(model):
    calib = random_calibration(model, n=3, seed=7)
    first, second = calib.tensors(), [batch["x"] for batch in calib.reader()]
    assert len(calib) == 3 and calib.source == "random"
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert all(t.shape == (1, 3, 16, 16) and -1 <= t.min() and t.max() < 1 for t in first)


def test_ready_tensors_work_as_a_set_too(model):
    tensors = tuple(np.full((1, 3, 16, 16), i, np.float32) for i in range(3))
    calib = CalibrationSet("x", tensors, "in memory")
    assert len(calib) == 3 and calib.head(2)[1][0, 0, 0, 0] == 1
    assert calib.to_dict()["shapes"] == ["1x3x16x16"] and calib.to_dict()["images"] == 3


# ---------------------------------------------------------------------------------------------- bad images


def test_unreadable_images_are_skipped_with_a_warning_and_counted(model, tmp_path):
    folder = write_images(tmp_path / "mixed", 3)
    (folder / "img_001b.png").write_bytes(b"not an image")
    (folder / "img_002b.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        calib = calibration_set(model, folder, CalibrationNeed(count=10))
    assert (len(calib), calib.skipped) == (3, 2)
    assert len(calib.tensors()) == 3 and calib.to_dict()["skipped"] == 2


def test_a_folder_where_nothing_can_be_read_is_one_clear_error(model, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="none of the 2 images .* could be read"):
        calibration_set(model, folder, CalibrationNeed(count=4))
    with pytest.raises(DatasetError, match="does not exist"):
        calibration_set(model, tmp_path / "missing", CalibrationNeed(count=4))
    with pytest.warns(UserWarning):
        code = run_cli(["quantize", str(model), "-o", str(tmp_path / "q.onnx"), "--calib", str(folder),
                        "--no-probe"])
    err = capsys.readouterr().err
    assert code == 2 and "Error:" in err and "could be read" in " ".join(err.split()) and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- downscaling


def test_downscale_keeps_the_size_multiple():
    tensor = np.random.default_rng(0).random((1, 3, 960, 1280), dtype=np.float32)
    small = downscale(tensor, 736, 32)
    assert small.shape == (1, 3, 544, 736) and small.dtype == np.float32
    assert max(small.shape[2:]) <= 736 and all(d % 32 == 0 for d in small.shape[2:])
    assert downscale(tensor, 2000, 32) is tensor  # already small enough: untouched
    assert downscale(tensor, 20, 32).shape == (1, 3, 32, 32)  # never below one multiple


def test_a_fully_convolutional_model_gets_its_tensors_downscaled_to_max_side(tmp_path):
    model = conv_model(tmp_path / "fcn.onnx", "h", "w")
    folder = write_images(tmp_path / "wide", 2, (480, 640))
    options = {"preprocessing": Preprocessing(size_multiple=32)}
    full = calibration_set(model, folder, CalibrationNeed(count=2), task="fidelity", task_options=options)
    small = calibration_set(model, folder, CalibrationNeed(count=2, max_side=320), task="fidelity",
                            task_options=options)
    assert full.shapes() == ((1, 3, 480, 640),)
    assert small.shapes() == ((1, 3, 256, 320),)  # longest side 320, both sides multiples of 32
    fixed = calibration_set(model, folder, CalibrationNeed(count=2, max_side=320), task="fidelity",
                            task_options=options, input_shape=(1, 3, 480, 640))
    assert fixed.shapes() == ((1, 3, 480, 640),)  # an input shape the user fixed is kept


# ---------------------------------------------------------------------------------------------- the need


def test_a_valid_need_passes_and_each_bad_field_says_how_to_fix_it():
    need = CalibrationNeed(count=16, max_side=736)
    assert need.to_dict() == {"count": 16, "max_side": 736, "split": "calib"}
    with pytest.raises(UsageError, match=r"calibration image count must be a whole number >= 1 \(got 0\).*e\.g\. 16"):
        CalibrationNeed(count=0)
    with pytest.raises(UsageError, match="calibration image count must be a whole number"):
        CalibrationNeed(count=2.5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"max_side must be a positive number of pixels, e\.g\. 736, or None"):
        CalibrationNeed(count=16, max_side=0)
    with pytest.raises(UsageError, match="unknown calibration split 'eval'; choose one of: calib"):
        CalibrationNeed(count=16, split="eval")


def test_the_cli_refuses_a_bad_calibration_size_with_one_line(model, images, tmp_path, capsys):
    code = run_cli(["prune", str(model), "-o", str(tmp_path / "p.onnx"), "--method", "channel", "--ratio", "0.5",
                    "--calib", str(images), "--calib-size", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "Error:" in err and "image count must be a whole number >= 1" in " ".join(err.split())
    assert not (tmp_path / "p.onnx").exists()
