"""`make bench`: run every bench/bench_*.py script's main() in turn (each prints its own ratio table)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path


def main() -> int:
    only = sys.argv[1:]  # optional: names like "foundation" to run a subset
    scripts = sorted(Path(__file__).parent.glob("bench_*.py"))
    failures = 0
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"\n=== bench/{script.name} ===", flush=True)
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
        start = time.perf_counter()
        try:
            spec.loader.exec_module(module)
            module.main()
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others
            failures += 1
            print(f"bench/{script.name} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"({time.perf_counter() - start:.0f} s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
