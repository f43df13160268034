"""The article's "speed it up with threads" example, done right, and measured.

The article shares ONE cv2.dnn.Net across a ThreadPoolExecutor. A Net is not re-entrant: setInput() and forward()
of two threads interleave on the same internal buffers. This script runs the same model on the same inputs four
ways, checks every output against a sequential reference, and times each:

  1. sequential      one Net, one thread (OpenCV's own threads inside forward)  <- the reference
  2. shared Net      one Net, N threads (the article's way)                    <- exceptions or wrong outputs
  3. Net per thread  N threads, each with its own Net (cv2.setNumThreads(1))
  4. processes       N processes, each with its own Net (cv2.setNumThreads(1))

Each case runs in its own interpreter, so a crash (segfault) in the shared case is reported, not fatal. Loading
and warm-up are not timed; images/s counts only the forward passes (and, for processes, moving arrays).
Usage:  python examples/threads_shared_net.py [--model ppocr-cls|PATH] [--images 400] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import get_context

import numpy as np

CASES = ("sequential", "shared", "per_thread", "processes")
_worker_net = None  # one per process in the 'processes' case


def _inputs(model: str, n: int) -> list[np.ndarray]:
    from cvtune.model import Model

    shape = Model.load(model).default_input_shape()
    rng = np.random.default_rng(0)
    return [rng.random(shape, dtype=np.float32) * 2 - 1 for _ in range(n)]


def _net(model: str):
    import cv2

    return cv2.dnn.readNet(model, engine=cv2.dnn.ENGINE_NEW) if hasattr(cv2.dnn, "ENGINE_NEW") else \
        cv2.dnn.readNet(model)


def _forward(net, x: np.ndarray) -> np.ndarray:
    net.setInput(x)
    return np.array(net.forward(), copy=True)


def _init_process(model: str) -> None:
    import cv2

    global _worker_net
    cv2.setNumThreads(1)
    _worker_net = _net(model)


def _forward_in_process(x: np.ndarray) -> np.ndarray:
    return _forward(_worker_net, x)


def run_case(case: str, model: str, n: int, workers: int) -> dict:
    """Runs in a child interpreter: returns images/s and how many outputs were wrong or raised."""
    import cv2

    xs = _inputs(model, n)
    reference = [_forward(_net(model), x) for x in xs]  # computed untimed, before the case
    outputs: list[np.ndarray | Exception] = []
    if case == "sequential":
        net = _net(model)
        _forward(net, xs[0])  # warm-up, untimed
        start = time.perf_counter()
        outputs = [_forward(net, x) for x in xs]
    elif case == "shared":
        net = _net(model)
        _forward(net, xs[0])

        def call(x):
            try:
                return _forward(net, x)
            except cv2.error as exc:
                return exc

        with ThreadPoolExecutor(workers) as pool:
            start = time.perf_counter()
            outputs = list(pool.map(call, xs))
    elif case == "per_thread":
        cv2.setNumThreads(1)
        outputs = [None] * len(xs)  # type: ignore[list-item]
        ready = threading.Barrier(workers + 1)
        next_index, lock = [0], threading.Lock()

        def work():
            net = _net(model)  # each thread loads its own Net before the clock starts
            _forward(net, xs[0])
            ready.wait()
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(xs):
                    return
                outputs[i] = _forward(net, xs[i])

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for t in threads:
            t.start()
        ready.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
    elif case == "processes":
        with get_context("spawn").Pool(workers, initializer=_init_process, initargs=(model,)) as pool:
            pool.map(_forward_in_process, xs[:workers * 4], chunksize=1)  # start and warm every process, untimed
            start = time.perf_counter()
            outputs = pool.map(_forward_in_process, xs, chunksize=8)
    seconds = time.perf_counter() - start
    errors = [o for o in outputs if isinstance(o, Exception)]
    wrong = sum(1 for o, r in zip(outputs, reference, strict=True)
                if not isinstance(o, Exception) and (o.shape != r.shape or not np.allclose(o, r, atol=1e-4)))
    first_error = str(errors[0]).strip().splitlines()[-1][:160] if errors else ""
    return {"case": case, "images": n, "seconds": seconds, "images_per_s": n / seconds, "errors": len(errors),
            "wrong": wrong, "first_error": first_error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ppocr-cls", help="zoo name or ONNX path (default: ppocr-cls)")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: run one case here
    args = parser.parse_args()
    from cvtune import zoo

    model = str(zoo.path(args.model)) if args.model in zoo.ZOO else args.model
    if args.case:
        print(json.dumps(run_case(args.case, model, args.images, args.workers)))
        return
    print(f"{os.path.basename(model)}, {args.images} inputs, {args.workers} workers, OpenCV DNN")
    rows = []
    for case in CASES:
        proc = subprocess.run([sys.executable, __file__, "--case", case, "--model", model, "--images",
                               str(args.images), "--workers", str(args.workers)], capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            code = proc.returncode
            reason = f"crashed (exit {code})" if code > 0 else f"killed by signal {-code}"
            rows.append({"case": case, "crash": reason})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = next((r["images_per_s"] for r in rows if r["case"] == "sequential" and "images_per_s" in r), None)
    print(f"{'case':<12} {'images/s':>9} {'vs seq':>7} {'wrong':>6} {'raised':>7}  note")
    for r in rows:
        if "crash" in r:
            print(f"{r['case']:<12} {'-':>9} {'-':>7} {'-':>6} {'-':>7}  {r['crash']}")
            continue
        ratio = f"{r['images_per_s'] / base:.2f}x" if base else "n/a"
        note = r["first_error"] or ("all outputs match the reference" if not r["wrong"] else "WRONG OUTPUTS")
        print(f"{r['case']:<12} {r['images_per_s']:>9.1f} {ratio:>7} {r['wrong']:>6} {r['errors']:>7}  {note}")


if __name__ == "__main__":
    main()
