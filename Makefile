# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NETDIR ?= var/localnet
SEEDS  ?= 100000

.PHONY: run test bench lint sim proto clean help postgres-deps

help:
	@echo "make run    - set up and run the local demo (see README)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make bench  - run the benchmarks (machine-readable JSON lines)"
	@echo "make lint   - ruff + mypy"
	@echo "make sim    - long consensus simulation campaign (SEEDS=$(SEEDS))"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/shadowledger network local --nodes 4 --dir $(NETDIR)

test: $(STAMP) postgres-deps
	$(PY) -m pytest -q -p no:cacheprovider

# The mirror's tests run a real PostgreSQL server (tests/integration/postgres.py): install
# Debian's `postgresql` when initdb is missing and we are root (CI); otherwise say so.
postgres-deps:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; \
	  else echo "PostgreSQL is missing: install the postgresql package (its tests are skipped, and fail under CI=true)"; fi; \
	fi

bench: $(STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check ledger consensus node tests bench
	$(VENV)/bin/mypy

sim: $(STAMP)
	$(PY) -m consensus.sim --seeds $(SEEDS)

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. proto/*.proto

clean:
	rm -rf $(VENV) var build *.egg-info
