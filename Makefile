# Two commands: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned and installed first: a range that admits newer releases pulls a
# multi-GB CUDA build. Elsewhere, add e.g. TORCH_PIP_ARGS="--index-url <a CPU wheel index>".
TORCH := torch==2.13.0
TORCH_PIP_ARGS ?=
# strict editable mode: mypy can follow it (the default import hook it cannot)
EDITABLE := --config-settings editable_mode=strict

.PHONY: demo test lint typecheck unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)" $(TORCH_PIP_ARGS)

# Stamps re-run the install when pyproject.toml changes.
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	@echo "Installing sensorium (llama-cpp-python compiles once: about 5 minutes on 2 cores)"
	$(BIN)/pip install --quiet -e ".[llm]" $(EDITABLE)
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	@echo "Installing sensorium with dev extras (llama-cpp-python compiles once: about 5 minutes)"
	$(BIN)/pip install --quiet -e ".[dev,llm,evals]" $(EDITABLE)
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/sensorium ask "What animal is this?" --image examples/images/chelsea.jpg

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

unit: $(VENV)/.dev-installed
	$(BIN)/pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) build *.egg-info
