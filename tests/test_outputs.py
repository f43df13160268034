"""What cvtune writes, and what it never loses: one -o policy on every command (refuse an existing output unless
--force, which replaces it atomically), permissions from the umask, a model and its sidecar committed together,
temporaries of killed processes removed by the next run, locks on shared outputs, commands running side by side
without disturbing each other, paths that are not UTF-8, a full disk, and unreadable images that never stop a run
or a search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import conv_chain

from cvtune.cli import run_cli
from cvtune.files import atomic_files, output_lock, temp_dir

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]), **extra}


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          errors="backslashreplace", env=env or _env(), timeout=300)


def killed_pid(tmp_path: Path) -> int:
    """The pid of a process that has exited (nothing runs under it now, barring reuse)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _crop(seed: int) -> np.ndarray:
    image = np.full((48, 192, 3), 230 - 15 * seed, np.uint8)
    cv2.putText(image, f"line {seed}", (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (10, 10, 10), 2)
    return image


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    conv_chain(root / "chain.onnx")
    (root / "images").mkdir()
    for i in range(4):
        cv2.imwrite(str(root / "images" / f"line_{i}.png"), _crop(i))
    return root


# ---- one -o policy: refuse, unless --force; --force replaces atomically -----------------------------------------

def _commands(i: Path, o: Path) -> dict[str, tuple[list[str], Path]]:
    """Command line and its main output, for every command that writes one."""
    return {
        "prune": (["prune", f"{i}/chain.onnx", "-o", f"{o}/p.onnx", "--sparsity", "0.5", "--no-skip-first"],
                  o / "p.onnx"),
        "prepare": (["prepare", f"{i}/chain.onnx", "-o", f"{o}/p.onnx"], o / "p.onnx"),
        "quantize": (["quantize", f"{i}/chain.onnx", "-o", f"{o}/q.onnx", "--calib", f"{i}/images", "--calib-size",
                      "2", "--no-probe"], o / "q.onnx"),
        "sensitivity": (["sensitivity", f"{i}/chain.onnx", "--data", f"{i}/images", "-o", f"{o}/s.json",
                         "--levels", "0.5", "--layer", "conv1"], o / "s.json"),
        "run": (["run", f"{i}/chain.onnx", "-i", f"{i}/images", "-o", f"{o}/r.jsonl", "--task", "raw"], o / "r.jsonl"),
        "synth-text": (["data", "synth-text", "-o", f"{o}/text", "--n", "1", "--fonts", "bundled"],
                       o / "text" / "meta.json"),
    }


@pytest.mark.parametrize("command", ["prune", "prepare", "quantize", "sensitivity", "run", "synth-text"])
def test_an_existing_output_is_refused_unless_force(command: str, inputs: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv, output = _commands(inputs, tmp_path)[command]
    assert run_cli(argv) == 0, capsys.readouterr().err
    first = output.read_bytes()
    capsys.readouterr()
    if command in ("run", "sensitivity"):  # resumable: the same command continues its own output
        assert run_cli(argv) == 0
        assert output.read_bytes() == first, "nothing left to do, nothing changed"
    else:
        assert run_cli(argv) == 2
        error = capsys.readouterr().err
        assert "--force" in error and error.count("Error:") == 1
        assert output.read_bytes() == first
    inode = output.stat().st_ino
    os.link(output, tmp_path / "old-output")  # keeps the old inode allocated: a new file cannot reuse its number
    assert run_cli([*argv, "--force"]) == 0
    assert output.stat().st_ino != inode, "--force wrote a new file (renamed into place), not edited the old one"
    assert not [p for p in tmp_path.rglob(".*cvtune-*")], "a temporary was left behind"


def test_a_foreign_file_is_never_replaced_by_a_resumable_output(inputs: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`run -o annotations.json` on a one-line COCO file (no final newline): refused and untouched, not cut."""
    coco = tmp_path / "annotations.json"
    coco.write_text('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": []}')
    before = coco.read_bytes()
    assert run_cli(["run", f"{inputs}/chain.onnx", "-i", f"{inputs}/images", "-o", str(coco)]) == 2
    assert "annotations.json" in capsys.readouterr().err
    assert coco.read_bytes() == before


# ---- permissions, multi-file commits, temporaries ------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask(umask: int, inputs: Path, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        assert run_cli(_commands(inputs, tmp_path)["prune"][0]) == 0
        assert run_cli(_commands(inputs, tmp_path)["synth-text"][0]) == 0
    finally:
        os.umask(previous)
    for path in (tmp_path / "p.onnx", tmp_path / "p.prune.json", tmp_path / "text" / "meta.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert (tmp_path / "text").stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_replaced_output_keeps_its_mode(inputs: Path, tmp_path: Path) -> None:
    argv, output = _commands(inputs, tmp_path)["prune"]
    assert run_cli(argv) == 0
    output.chmod(0o600)
    assert run_cli([*argv, "--force"]) == 0
    assert output.stat().st_mode & 0o777 == 0o600


def test_a_model_is_never_without_its_sidecar(inputs: Path, tmp_path: Path) -> None:
    """Killed between the two renames of a model + sidecar commit: the sidecar is there, the model is not (it is
    renamed last), and the killed writer's temporary is removed by the next write into that folder."""
    code = f"""
        import os, signal
        from cvtune import files
        real = os.replace
        def replace_then_die(src, dst):
            real(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace_then_die
        with files.atomic_files({str(tmp_path / 'm.onnx')!r}, {str(tmp_path / 'm.prune.json')!r}) as (m, s):
            m.write_bytes(b"model")
            s.write_text("{{}}")
    """
    assert _python(code).returncode == -signal.SIGKILL
    assert (tmp_path / "m.prune.json").exists() and not (tmp_path / "m.onnx").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if ".cvtune-" in p.name]
    assert leftovers, "the killed writer's model temporary is still there"
    with atomic_files(tmp_path / "other.txt") as (tmp,):
        tmp.write_text("x")
    assert not [p for p in tmp_path.iterdir() if ".cvtune-" in p.name]


def test_temporaries_of_killed_processes_are_removed_and_live_ones_kept(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(TMPDIR=str(tmp_path))
    killed = _python("""
        import os, signal
        from cvtune import files
        root = files.use_process_temp_root()
        (root / "half-written.onnx").write_bytes(b"x" * 1000)
        with files.temp_dir("quantize") as work:
            (work / "quantized.onnx").write_bytes(b"y")
            os.kill(os.getpid(), signal.SIGKILL)
    """, env)
    assert killed.returncode == -signal.SIGKILL
    [root] = tmp_path.glob("cvtune-*")  # the killed process's private root, its scratch folders inside
    assert (root / "half-written.onnx").exists() and len(list(root.glob("cvtune-*-quantize-*"))) == 1
    live = tmp_path / f"cvtune-{os.getpid()}-alive"  # this process is alive: its folder must survive
    live.mkdir()
    # a folder whose pid looks dead from here (another pid namespace sharing /tmp) but whose owner is alive: kept
    elsewhere = tmp_path / f"cvtune-{killed_pid(tmp_path)}-container"
    elsewhere.mkdir()
    owner = os.open(elsewhere / ".cvtune-owner", os.O_RDWR | os.O_CREAT)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; fcntl.flock(int(sys.argv[1]), "
                               "fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(owner)],
                              pass_fds=(owner,), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        with temp_dir("next") as scratch:  # the next cvtune to make a temporary folder sweeps the dead ones
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, scratch.name])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name])
    finally:
        holder.kill()
        holder.wait()
        os.close(owner)


# ---- locks -------------------------------------------------------------------------------------------------------

def test_a_second_run_into_the_same_output_is_refused_naming_the_first(inputs: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from cvtune import files
        files.current_command = "cvtune run model.onnx -o r.jsonl"
        with files.output_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert run_cli(["run", f"{inputs}/chain.onnx", "-i", f"{inputs}/images", "-o", str(out)]) == 2
        error = capsys.readouterr().err
        assert f"pid {holder.pid}" in error and "cvtune run model.onnx -o r.jsonl" in error
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its lock is free and simply taken over
    assert run_cli(["run", f"{inputs}/chain.onnx", "-i", f"{inputs}/images", "-o", str(out), "--task", "raw"]) == 0
    assert len(out.read_text().splitlines()) == 4


def test_a_second_search_into_the_same_folder_is_refused(cls_model: Path, inputs: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "opt"
    with output_lock(out, folder=True):
        assert run_cli(["optimize", str(cls_model), "--task", "fidelity", "--data", f"{inputs}/images", "-o",
                        str(out), "--runtimes", "ort"]) == 2
    error = capsys.readouterr().err
    assert f"pid {os.getpid()}" in error and "in use by another cvtune" in error
    assert not (out / "trials.sqlite").exists()


# ---- commands side by side -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_static_quantizations_at_once_both_succeed(cls_model: Path, inputs: Path, tmp_path: Path) -> None:
    """Each works in its own private temporary folder (ORT's quantizer writes beside its input), so two
    concurrent quantizations, sharing $TMPDIR, never see each other's files."""
    env = _env(TMPDIR=str(tmp_path))
    args = [sys.executable, "-c", "from cvtune.cli import main; main()", "quantize", str(cls_model), "--calib",
            f"{inputs}/images", "--calib-size", "2", "--no-probe", "-o"]
    procs = [subprocess.Popen([*args, str(tmp_path / f"q{i}.onnx")], stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    for i in range(2):
        sidecar = json.loads((tmp_path / f"q{i}.quant.json").read_text())
        assert sidecar["schema"] == "cvtune-quant/1" and sidecar["quantized_nodes"] > 0
    assert not list(tmp_path.glob("*cvtune-*")), "no temporary of either is left"


@pytest.mark.slow
def test_two_searches_at_once_both_finish_even_when_the_first_image_is_unreadable(cls_model: Path, tmp_path: Path
                                                                                  ) -> None:
    """Two optimize runs into different folders at the same time (each its own process, sharing $TMPDIR); in
    their data the first evaluation image (the one the fit check used to run alone) is corrupt: it is skipped, not
    blamed on the model. A 2-candidate search, as in conftest.small_search_config."""
    from cvtune.search.context import eval_split

    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        cv2.imwrite(str(data / f"line_{i}.png"), _crop(i))
    _, evaluation = eval_split(str(data), None, 0.3, 0)
    evaluation.samples[0].path.write_bytes(b"\x89PNG\r\n\x1a\n cut off")
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from cvtune.search import OptimizeConfig, SpaceConfig, optimize
        space = SpaceConfig(runtimes=("ort",), threads=(1,), transforms=())
        config = OptimizeConfig(model=Path({str(cls_model)!r}), task="fidelity", data=Path({str(data)!r}),
                                out=Path(sys.argv[1]), space=space, eval_images=4, final_min_time_s=0.2)
        result = optimize(config)
        print(json.dumps({{"best": result.best is not None, "exported": str(result.exported)}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"opt{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(TMPDIR=str(tmp_path))) for i in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        assert json.loads(out.splitlines()[-1])["best"]
    for i in range(2):
        deploy = json.loads((tmp_path / f"opt{i}" / "best" / "deploy.json").read_text())
        assert deploy["schema"] == "cvtune-deploy/1" and deploy["model"] == "model.onnx"


# ---- paths that are not UTF-8, a full disk, unreadable images -----------------------------------------------------

def test_paths_that_are_not_utf8_work(cls_model: Path, inputs: Path, tmp_path: Path) -> None:
    """A folder named b'\\xff': OpenCV cannot take such a path as text (its binding crashed), so Python reads the
    files and hands OpenCV buffers. In child processes: a crash would be a signal, not a failed assert."""
    folder = os.fsdecode(bytes(tmp_path) + b"/bad\xffname")
    os.mkdir(folder)
    model = os.path.join(folder, "m.onnx")
    Path(model).write_bytes(cls_model.read_bytes())
    for name in ("line_0.png", os.fsdecode(b"line_\xff.png")):
        cv2.imencode(".png", _crop(len(name)))[1].tofile(os.path.join(folder, name))
    argvs = [["inspect", model, "--no-probe"],
             ["eval", model, "--task", "fidelity", "--data", folder, "--reference", model, "--limit", "2"],
             ["run", model, "-i", folder, "-o", os.path.join(folder, "r.jsonl")],
             ["prune", model, "-o", os.path.join(folder, "p.onnx"), "--sparsity", "0.3"],
             ["quantize", model, "-o", os.path.join(folder, "q.onnx"), "--calib", folder, "--no-probe"]]
    code = f"""
        import json, os, sys
        from cvtune.cli import run_cli
        codes = [run_cli([os.fsdecode(a) for a in argv]) for argv in {[[os.fsencode(a) for a in argv]
                                                                       for argv in argvs]!r}]
        print("EXIT CODES", json.dumps(codes))
    """
    done = _python(code)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.splitlines()[-1] == "EXIT CODES [0, 0, 0, 0, 0]", done.stderr[-1500:]
    rows = [json.loads(r) for r in Path(folder, "r.jsonl").read_text().splitlines()]
    assert sorted(r["file"] for r in rows) == sorted(["line_0.png", os.fsdecode(b"line_\xff.png")])
    assert all("prediction" in r for r in rows)
    assert json.loads(Path(folder, "p.prune.json").read_text())["input"] == model


def test_a_full_disk_is_one_line_naming_the_output(cls_model: Path, tmp_path: Path) -> None:
    """Writes beyond RLIMIT_FSIZE fail like a full disk (EFBIG): one line naming the output, nothing left."""
    code = f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        from cvtune.cli import run_cli
        sys.exit(run_cli(["prune", {str(cls_model)!r}, "-o", {str(tmp_path / 'p.onnx')!r}, "--sparsity", "0.3"]))
    """
    done = _python(code)
    assert done.returncode == 2, done.stderr[-1500:]
    errors = [line for line in done.stderr.splitlines() if "Error:" in line]
    assert len(errors) == 1 and "p.onnx" in errors[0] and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_prepare_writes_its_output_only_once_verified(inputs: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cvtune import prepare

    monkeypatch.setattr(prepare, "compare_outputs", lambda *a, **k: prepare.Equivalence(1.0, 0.5, 2))
    assert run_cli(["prepare", f"{inputs}/chain.onnx", "-o", f"{tmp_path}/p.onnx"]) == 2
    assert list(tmp_path.iterdir()) == []


def test_unreadable_and_oversized_images_get_error_rows_and_the_run_goes_on(inputs: Path, tmp_path: Path) -> None:
    from test_bad_inputs import _png_claiming

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"ok_{i}.png"), _crop(i))
    (folder / "huge.png").write_bytes(_png_claiming(100_000, 100_000))
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 not the rest")
    out = tmp_path / "r.jsonl"
    assert run_cli(["run", f"{inputs}/chain.onnx", "-i", str(folder), "-o", str(out), "--task", "raw"]) == 0
    rows = {r["file"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(rows) == ["cut.jpg", "huge.png", "ok_0.png", "ok_1.png"]
    assert "too large" in rows["huge.png"]["error"] and "error" in rows["cut.jpg"]
    assert all("prediction" in rows[f"ok_{i}.png"] for i in range(2))


def test_version_and_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--version"]) == 0
    assert capsys.readouterr().out.startswith("cvtune ")
    assert run_cli(["schema", "deploy"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$id"] == "cvtune-deploy/1" and {"model", "runtime"} <= set(schema["required"])


def test_temp_dir_is_private_and_removed() -> None:
    with temp_dir("unit") as first, temp_dir("unit") as second:
        assert first != second and f"cvtune-{os.getpid()}-unit-" in first.name
    assert not first.exists() and not second.exists()


# ---- reports: names from the run are text, never markup ----------------------------------------------------------

def test_reports_escape_names_from_the_run(optimize_run, tmp_path: Path) -> None:
    """A model named like markup and an output folder named r<!--<script>: report.md shows them as text (Markdown
    viewers render raw HTML), and report.html's JSON block stays one inert, parseable block."""
    import html
    import re
    import shutil

    from cvtune.report import write_report
    from cvtune.search.store import Store

    config, _ = optimize_run
    out = tmp_path / "r<!--<script>"
    shutil.copytree(config.out, out, ignore=shutil.ignore_patterns("models"))
    name = '<img src=x onerror=alert(1)>[click](javascript:alert(2))'
    with Store.open(out) as store:
        store.set_meta("facts", {**store.get_meta("facts", {}), "model_name": name})
        store.set_meta("result", {**store.get_meta("result"), "out": str(out)})  # the folder name, in the JSON
    write_report(out)
    markdown = (out / "report.md").read_text()
    assert "<img" not in markdown and "[click](" not in markdown  # no raw HTML, no live link
    assert "&lt;img src=x onerror=alert(1)&gt;\\[click\\](javascript:alert(2))" in markdown
    page = (out / "report.html").read_text()
    assert "<img src=x" not in page and html.escape(name) in page
    [block] = re.findall(r'<script type="application/json" id="result-data">(.*?)</script>', page, re.S)
    assert "<" not in block and ">" not in block
    data = json.loads(block)
    assert "r<!--<script>" in json.dumps(data, ensure_ascii=False)
