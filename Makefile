# Set-up contract: `make demo` and `make test` work on a fresh machine; both run `make setup` first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# torch and torchvision are pinned here (not in pyproject) as a matching pair; GPU users and why this pair:
# docs/gpu.md. A venv whose torch/torchvision differ from the pin is reinstalled (scripts/torch_pin.py).
TORCH   ?= torch==2.14.1 torchvision==0.29.1
STAMP   := $(VENV)/.setup-stamp

.PHONY: setup demo test test-slow test-all bench lint docs clean web-setup

setup: $(STAMP) web-setup

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python scripts/torch_pin.py $(TORCH) || $(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[train,dev,explain,sign,mlflow,tensorboard,postgres]"
	touch $(STAMP)

# Browser pieces (docs/playground.md, docs/browser.md): Debian's chromium via apt-get when missing, the pinned
# onnxruntime-web (npm ci into ~/.cache/toolkit) and the onnxruntime that writes web bundles' ORT models.
web-setup: $(STAMP)
	$(BIN)/python scripts/web_setup.py

demo: setup
	bash scripts/demo.sh

# The suite (under 10 minutes on 2 cores): every test but the `slow` ones. `make test-slow` runs those (the
# docs' examples, default-recipe accuracy, the SIGKILL and real-PostgreSQL fault tests, ...); CI runs both.
test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

test-all: setup
	$(BIN)/python -m pytest -q

# Debian's PostgreSQL server binaries for the distributed-tuning test (tests/test_tune_postgres.py, docs/tuning.md).
.PHONY: postgres-setup
postgres-setup: $(STAMP)
	$(BIN)/python scripts/postgres_setup.py

# The edge bundle on an emulated arm64 device: Debian bookworm arm64 + qemu-aarch64-static, cached in
# .cache/arm64/ (docs/raspberry-pi.md). Installs debootstrap/qemu-user-static when missing.
.PHONY: edge-arm64
edge-arm64: setup
	$(BIN)/python scripts/edge_arm64.py

bench: setup
	$(BIN)/python bench/train_overhead.py --out bench/results/train_overhead.json
	$(BIN)/python bench/pipeline.py --out bench/results/pipeline.json
	$(BIN)/python bench/edge_bench.py --out bench/results/edge.json
	$(BIN)/python bench/serve_bench.py --out bench/results/serve.json
	$(BIN)/python bench/web_bench.py --out bench/results/web.json
	TOOLKIT_FUZZ_FULL=1 $(BIN)/python -m pytest -q tests/test_server_fuzz.py -k 10000
	$(BIN)/python bench/serve_soak.py --requests 1000000 --out bench/results/serve_soak_1m.json
	if $(BIN)/python -c "import flwr, flwr_datasets" 2>/dev/null; then \
		$(BIN)/python bench/federate_bench.py --out bench/results/federate.json; \
	else echo "federate bench skipped: pip install -e '.[federate]'"; fi
	$(BIN)/python bench/explain_bench.py --out bench/results/explain.json
	$(BIN)/python bench/import_bench.py --out bench/results/import.json
	$(BIN)/python bench/distributed_bench.py --out bench/results/distributed.json
	$(BIN)/python bench/tables_bench.py --out bench/results/tables.json
	$(BIN)/python bench/images_bench.py --out bench/results/images.json
	$(BIN)/python bench/pretrain_bench.py --out bench/results/pretrain.json

# The GPU path end to end on a machine with an NVIDIA GPU (docs/gpu.md): makes .venv-gpu from wheels (CUDA
# torch, onnxruntime-gpu, TensorRT libs) and writes bench/results/gpu_check.json; without a GPU it exits 3 at once.
.PHONY: gpu-check
gpu-check:
	$(PY) scripts/gpu_check.py --out bench/results/gpu_check.json $(GPU_CHECK_ARGS)

LINTED  := toolkit tests bench scripts

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# The documentation site (mkdocs.yml, docs/): --strict fails on a broken link, a missing anchor or a page
# missing from the nav. The docs extra is installed into .venv once (stamp).
DOCS_STAMP := $(VENV)/.docs-stamp

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e ".[train,dev,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site .pytest_cache
