"""Run a function in a child process with a timeout and a memory limit, so a crash in a runtime (segfault,
abort, OOM, hang) becomes a TrialFailed with a reason instead of taking cvtune down.

The child is `python -m cvtune.isolate`: it reads {"func": "module:name", "kwargs": {...}} as JSON on stdin,
calls the function, and writes its JSON-serializable result to a file (stdout stays free for library noise).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from .errors import CvtuneError, TrialFailed


def run_isolated(func: str, kwargs: dict[str, Any], *, timeout: float = 300.0, memory_limit_mb: int | None = None,
                 env: dict[str, str] | None = None) -> Any:
    """Call `func` ("package.module:function") with JSON `kwargs` in a fresh interpreter and return its result."""
    with tempfile.TemporaryDirectory(prefix="cvtune-child-") as tmp:
        result_file = Path(tmp) / "result.json"
        payload = json.dumps({"func": func, "kwargs": kwargs, "result": str(result_file),
                              "memory_limit_mb": memory_limit_mb})
        child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "cvtune.isolate"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env, text=True,
                                start_new_session=True)
        try:
            _, stderr = proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TrialFailed(f"timed out after {timeout:.0f} s") from None
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        if result_file.exists():
            outcome = json.loads(result_file.read_text())
            if outcome.get("ok"):
                return outcome["value"]
            raise TrialFailed(outcome.get("error", "failed"))
        if proc.returncode and proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            raise TrialFailed(f"crashed with {sig}" + (" (out of memory?)" if sig == "SIGKILL" else ""))
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        if "MemoryError" in stderr or "bad_alloc" in stderr:
            limit = f" (limit {memory_limit_mb} MB)" if memory_limit_mb else ""
            raise TrialFailed(f"ran out of memory{limit}")
        raise TrialFailed(f"child exited with code {proc.returncode}: {tail[0][:300]}")


def _child() -> None:
    request = json.loads(sys.stdin.read())
    if request.get("memory_limit_mb"):
        import resource

        limit = int(request["memory_limit_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    module_name, func_name = request["func"].split(":")
    try:
        value = getattr(importlib.import_module(module_name), func_name)(**request["kwargs"])
        outcome = {"ok": True, "value": value}
    except MemoryError:
        limit = request.get("memory_limit_mb")
        outcome = {"ok": False, "error": "ran out of memory" + (f" (limit {limit} MB)" if limit else "")}
    except CvtuneError as exc:
        outcome = {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any failure of the measured code is the trial's result
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        message = f"{type(exc).__name__}: {first[:300]} ({where})"
        if type(exc).__module__.startswith("cv2"):
            from .runtimes.opencv import _cv_error_line

            message = f"OpenCV error: {_cv_error_line(exc)}"
        outcome = {"ok": False, "error": message}
    Path(request["result"]).write_text(json.dumps(outcome, default=str))


if __name__ == "__main__":
    _child()
