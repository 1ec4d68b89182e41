# Two commands: `make demo` and `make test`. Both create .venv when needed and install exactly
# the versions in constraints.txt (the lock); `make lock` refreshes it deliberately.
# `make demo` installs no LLM: by default the router plans and templates reply (the packaged
# SmolLM2 is opt-in, docs/configuration.md), so a new user's first run compiles nothing.
# `make test` builds the local LLM (the `llm` extra, llama.cpp compiled portably) and tests it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := constraints.txt
# Every install step, build environments included, takes the locked versions.
INSTALL := $(BIN)/pip install --quiet --constraint $(LOCK) --build-constraint $(LOCK)
# torch: the lock pins a release whose CPU wheel this machine kind has on disk (a range that
# admits newer releases pulls a multi-GB CUDA build). Elsewhere, for a CPU-only torch, add
# TORCH_PIP_ARGS="--index-url <PyTorch's CPU wheel index>".
TORCH_PIP_ARGS ?=
# llama.cpp compiles at install (`make test` only). Never for the build machine's CPU: native
# builds crashed on other CPUs. OFF builds for x86-64-v3 (AVX2, FMA, F16C) on x86; see
# docs/install.md.
# LLAVA_BUILD=OFF skips llama.cpp's multimodal library, which nothing here loads.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
# strict editable mode: mypy can follow it (the default import hook it cannot)
EDITABLE := --config-settings editable_mode=strict

.PHONY: demo test lint typecheck unit browser fusion-fit lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint $(LOCK) pip
	$(INSTALL) torch $(TORCH_PIP_ARGS)

# --no-cache-dir: a wheel pip cached from an earlier (native) build must not stand in for it.
$(VENV)/.llama-installed: $(LOCK) | $(BIN)/python
	@echo "Building llama-cpp-python portably (once: about 5 minutes on 2 cores)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(INSTALL) --no-cache-dir "llama-cpp-python[server]"
	echo "CMAKE_ARGS=$(LLAMA_CMAKE_ARGS)" > $@  # the build flags, checked by the tests

# Stamps re-run the install when pyproject.toml or the lock changes, or a package folder
# gains or loses a file (a folder's mtime): a strict editable install lists every file, so a
# new module is invisible until it is installed again.
PACKAGE_DIRS := sensorium sensorium/cli sensorium/server sensorium/server/web agent tools graphs evals tools/data graphs/data \
	evals/suites evals/data
# The demo: no `llm` extra and no llama.cpp build (about 5 of the 5.6 minutes a first
# `make demo` took when it had them).
$(VENV)/.demo-installed: pyproject.toml $(LOCK) $(PACKAGE_DIRS) | $(BIN)/python
	$(INSTALL) -e ".[serve,ocr]" $(EDITABLE)
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(LOCK) $(PACKAGE_DIRS) $(VENV)/.llama-installed
	$(INSTALL) -e ".[dev,llm,evals,serve,ocr,ray]" $(EDITABLE)
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/sensorium ask "What animal is this?" --image examples/images/chelsea.jpg

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

unit: $(VENV)/.dev-installed browser
	$(BIN)/pytest -q

# The web chat's test drives a real headless Chromium: Debian's package, installed here when
# none is found (as root, or through sudo). Elsewhere set SENSORIUM_CHROMIUM to a Chromium or
# Chrome binary.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ -z "$$SENSORIUM_CHROMIUM" ] && ! command -v chromium >/dev/null \
		&& ! command -v chromium-browser >/dev/null; then \
		echo "Installing Debian's chromium for the web chat's test (about a minute)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| { echo "could not install chromium: install it, or set SENSORIUM_CHROMIUM" >&2; exit 1; }; \
	fi

test: lint typecheck unit

# Refit the lite profile's built-in fusion fit (maps, prior, weights; one fit per domain,
# photo and graphic) on the built-in training data: easy-VQA's train split (graphics), and the
# training shares of photos-vqa and photo-train (photos). Each run's held-out share, and
# easy-VQA's test split, stay unseen. About 4 minutes; review the diff of the JSON.
FIT_RUNS := build/fusion-fit
FIT_SUITES := easy-vqa-train photos-vqa photo-train
fusion-fit: $(VENV)/.dev-installed
	rm -rf $(FIT_RUNS)
	$(BIN)/sensorium eval run $(FIT_SUITES) --limit 6000 --no-llm --out $(FIT_RUNS)
	$(BIN)/sensorium eval calibrate $(foreach suite,$(FIT_SUITES),$(FIT_RUNS)/$(suite)-*) \
		--fit-on train --out $(FIT_RUNS)/fusion-lite.json
	cp $(FIT_RUNS)/fusion-lite.json graphs/data/fusion-lite.json

# Resolve the newest versions pyproject.toml allows (torch stays at the locked release) in a
# scratch environment, and write them to the lock. Review the diff, then run `make test`.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip lock --quiet -o pylock.toml ".[dev,llm,evals,serve,ocr,ray]" \
		"torch==$$(sed -n 's/^torch==//p' $(LOCK))" setuptools wheel scikit-build-core
	$(LOCK_VENV)/bin/python .ci/lock.py pylock.toml \
		"$$($(LOCK_VENV)/bin/pip --version | cut -d' ' -f2)" > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV) pylock.toml

clean:
	rm -rf $(VENV) $(LOCK_VENV) pylock.toml build *.egg-info
