# The two set-up commands of the README: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench
setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/tabsynth demo

test: setup
	$(BIN)/ruff check tabsynth tests benchmarks
	$(BIN)/ruff format --check tabsynth tests benchmarks
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/transformer.py
