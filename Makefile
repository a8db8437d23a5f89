# Every target sets itself up: a virtual environment in .venv with the pinned CPU torch, then the project.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo

.PHONY: demo test bench bundle clean

# torch is installed first and pinned: on these machines an unpinned torch resolves to a multi-GB CUDA build.
# --no-compile, then compileall: pip byte-compiles one file at a time, compileall -j 0 on every core. The .pyc
# files must exist: where PYTHONDONTWRITEBYTECODE is set (as here) nothing writes them later, and every process
# that imports torch would compile its sources again (.pyc files are still read). Test folders are skipped:
# nothing imports them, and some hold syntax of newer Pythons.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --no-compile --disable-pip-version-check -e ".[train,bench,dev]"
	$(PY) -m compileall -q -j 0 -x '/(tests?|testing/_internal)/' "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	touch $(STAMP)

## demo: train on the digits, export to ONNX (fp32, every variant that holds its gate, the recommended pair), then sample, reconstruct and score with the runtime
demo: $(STAMP)
	$(BIN)/vae-train --out $(DEMO)/model.pt
	$(BIN)/vae-export $(DEMO)/model.pt --out $(DEMO)/bundle
	$(BIN)/vae-run info $(DEMO)/bundle
	$(BIN)/vae-run sample $(DEMO)/bundle -n 64 --seed 0 --grid $(DEMO)/samples.png --out $(DEMO)/samples.npy
	$(PY) -c "import numpy as np; from vae_edge.trainer.data import load_data; np.save('$(DEMO)/test_digits.npy', load_data().test[:32])"
	$(BIN)/vae-run reconstruct $(DEMO)/bundle $(DEMO)/test_digits.npy --precision auto --grid $(DEMO)/reconstructions.png --out $(DEMO)/reconstructions.npy
	$(BIN)/vae-run score $(DEMO)/bundle $(DEMO)/test_digits.npy --out $(DEMO)/scores.npy
	@echo "demo: see $(DEMO)/samples.png and $(DEMO)/reconstructions.png (runtime), $(DEMO)/model.*.png (trainer)"

## test: the whole suite (fast; `-m slow` runs the slow extras)
test: $(STAMP)
	$(PY) -m pytest

## bench: side-by-side benchmarks (PyTorch eager vs every bundle variant, overhead, matmul peak, cold start);
## prints Markdown tables, writes bench/results.json. Builds its bundles once into build/bench/.
## `make bench BENCH_ARGS=--quick` (under a minute once built), `BENCH_ARGS="--threads 1"`.
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## bundle: regenerate the default bundle shipped in runtime/default_bundle (deterministic: fixed seed,
## one thread, timestamp from the last commit that changed anything but the bundle, and --no-latency:
## timings differ run to run, so the shipped manifest carries none; `vae-export` without it times each variant)
bundle: $(STAMP)
	rm -rf build/default-bundle && mkdir -p build/default-bundle
	OMP_NUM_THREADS=1 $(BIN)/vae-train --seed 0 --quiet --out build/default-bundle/model.pt
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct -- . ':!runtime/default_bundle' 2>/dev/null || echo 0) OMP_NUM_THREADS=1 \
		$(BIN)/vae-export build/default-bundle/model.pt --no-latency --out runtime/default_bundle

clean:
	rm -rf $(DEMO) build .pytest_cache
