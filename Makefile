# Two commands do all the set-up: `make serve` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_MARKERS ?= not slow and not neo4j and not gpu and not postgres and not redis

.PHONY: help setup models demo serve test test-postgres test-browser test-slow bench lint format lock clean

help:
	@echo "make serve  - install, provision models, build demo graphs, start the API on 127.0.0.1:8000"
	@echo "make test   - the same set-up, then the test suite"
	@echo "make lint   - ruff + mypy"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# llama.cpp (the CPU decode engine) is built from the llama-cpp-python sdist, once per machine
# (~8 min on 2 cores; pip caches the wheel): portable x86 flags (AVX2/FMA/F16C, no -march=native,
# no AMX, whose kernels crash on some Intel hosts) so one build runs on every CPU of this kind.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

# Reinstall only when the dependency declarations change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,postgres]'
	@echo "installing llama-cpp-python (built from source the first time on this machine: ~8 min)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q --disable-pip-version-check \
		-c constraints.txt -e '.[llamacpp]' \
		|| echo "warning: llama-cpp-python did not build; the service decodes with torch (see README)"
	touch $@

setup: $(VENV)/.installed

models: setup
	$(BIN)/kgnlp models pull

# The demo graphs, the retail index, the three apps' models, and entity vectors for
# /kg/entities/{id}/similar (each step is skipped when its inputs are unchanged).
demo: models
	$(BIN)/kgnlp kg build-demo retail
	$(BIN)/kgnlp kg build-demo finance
	$(BIN)/kgnlp index build --corpus retail
	$(BIN)/kgnlp cs setup
	$(BIN)/kgnlp sentiment setup
	$(BIN)/kgnlp recommend setup
	$(BIN)/kgnlp kg train-embeddings --graph finance --model complex --max-minutes 2 --no-progress
	$(BIN)/kgnlp kg train-embeddings --graph retail --model complex --max-minutes 2 --no-progress

serve: demo
	$(BIN)/kgnlp serve

test: demo
	$(BIN)/python -m pytest -m "$(PYTEST_MARKERS)"

# The `postgres` and `redis` tests: they need KGNLP_TEST_POSTGRES_URL and KGNLP_TEST_REDIS_URL
# (.ci/run starts throw-away servers with .ci/postgres.sh and .ci/redis.sh, after `make test` has
# built the demo; the tests provision any model they miss themselves). Without one, its tests skip.
test-postgres: setup
	$(BIN)/python -m pytest -m "(postgres or redis) and not slow"

# The /chat page in a headless Chromium (`bash .ci/browser.sh` installs it; CI runs this).
test-browser: demo
	$(BIN)/python -m pytest -m "browser"

test-slow: demo
	$(BIN)/python -m pytest -m slow

# Every benchmark, quick profile (~15 min): artifacts/bench/REPORT.md. BENCH_ARGS=--full for the README's figures.
bench: demo
	$(BIN)/kgnlp bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kgnlp kg models retrieval apps
	$(BIN)/python -m pytest -q tests/test_import_contract.py

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: setup
	head -2 constraints.txt > constraints.txt.new
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^kgnlp' | sed 's/+cpu$$//' >> constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
