# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NETDIR ?= var/localnet
SEEDS  ?= 100000

.PHONY: run test bench lint sim proto clean help browser

help:
	@echo "make run    - set up and run the local demo (see README)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make bench  - run the benchmarks (machine-readable JSON lines)"
	@echo "make lint   - ruff + mypy"
	@echo "make browser - install headless Chromium (Debian, as root) for the explorer test"
	@echo "make sim    - long consensus simulation campaign (SEEDS=$(SEEDS))"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/shadowledger network local --nodes 4 --dir $(NETDIR)

test: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider

# Headless Chromium for the explorer's screenshot test (Debian packages). Installed only
# when missing and when running as root; otherwise that one test says what to install.
BROWSER_PKGS ?= chromium fonts-dejavu-core
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(BROWSER_PKGS) (explorer screenshot test)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS); \
	else echo "note: chromium is missing and cannot be installed here (need root and apt-get);" \
		"the explorer screenshot test will fail under CI=true"; fi

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
