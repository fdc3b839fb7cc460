# cxpulse: `make run` and `make test` set everything up themselves (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the dependency declarations change: the stamp is named by their content
# (not their mtime, which a checkout or an editor's save moves without changing anything).
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml deploy/constraints.txt | sha256sum | cut -c1-16)

.PHONY: setup run test lint format lock bench clean

# The Go module is the test-time schema check of the Grafana files (tests/dashboards).
setup: $(STAMP)
	@$(BIN)/cxpulse kafka fetch
	@command -v go >/dev/null || { echo "make setup: Go 1.22+ must be on PATH" >&2; exit 1; }
	@cd dashboards/schemacheck && go mod download

# setuptools notes "Editable installation." on every editable install and pip shows a local
# project's build warnings even with --quiet: filter that one note; other warnings and every
# error still show.
$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cxpulse needs Python 3.11+, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation' \
	  $(BIN)/python -m pip install --quiet -c deploy/constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

run: setup
	$(BIN)/cxpulse up

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two pytest workers: most tests wait on a broker or a subprocess, so two keep both cores busy.
test: lint
	$(BIN)/pytest -n 2 --dist worksteal

# Benchmarks write bench/results/<name>.json and .md. The API benchmark's load generator is wrk.
bench: setup
	@command -v wrk >/dev/null || { s=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$s apt-get install -y wrk || { $$s apt-get update && $$s apt-get install -y wrk; }; }
	$(BIN)/python -m bench.validation
	$(BIN)/python -m bench.api_latency
	$(BIN)/python -m bench.worker_throughput
	$(BIN)/python -m bench.freshness
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.history

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Pin the exact versions of the current virtualenv (after changing pyproject.toml).
lock:
	@{ echo "# Exact versions cxpulse is tested with; regenerate with \`make lock\`."; \
	   $(BIN)/pip freeze --exclude-editable | grep -v '^cxpulse'; } > deploy/constraints.txt

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
