# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NETDIR ?= var/localnet
SEEDS  ?= 100000
SOAK_MINUTES ?= 30
FUZZ_EXAMPLES ?= 5000

.PHONY: run test bench lint sim proto clean help system-deps faults soak fuzz

help:
	@echo "make run    - set up and run the local demo (see README)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make bench  - run the benchmarks (machine-readable JSON lines)"
	@echo "make lint   - ruff + mypy"
	@echo "make system-deps - install Debian packages some tests use (as root)"
	@echo "make sim    - long consensus simulation campaign (SEEDS=$(SEEDS))"
	@echo "make faults - the short fault-injection, fuzzing and auth suite (part of make test)"
	@echo "make soak   - long fault campaign under load (SOAK_MINUTES=$(SOAK_MINUTES)), JSON summary"
	@echo "make fuzz   - decoder and API fuzzing with more cases (FUZZ_EXAMPLES=$(FUZZ_EXAMPLES))"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/shadowledger network local --nodes 4 --dir $(NETDIR)

test: $(STAMP) system-deps
	$(PY) -m pytest -q -p no:cacheprovider

# Debian packages some tests drive for real: systemd (systemd-analyze verify of deploy/),
# chromium (the explorer's screenshot test), postgresql (the mirror's tests run a real
# server). Installed only when missing and when running as root with apt-get; otherwise
# the tests that need them say what to install (and fail under CI=true rather than skip).
SYSTEM_PKGS ?= systemd chromium fonts-dejavu-core postgresql
system-deps:
	@missing=""; for p in $(SYSTEM_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "missing Debian packages:$$missing (need root and apt-get);" \
	  "the tests that use them fail under CI=true" >&2; fi

bench: $(STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check ledger consensus node tests bench
	$(VENV)/bin/mypy

sim: $(STAMP)
	$(PY) -m consensus.sim --seeds $(SEEDS)

faults: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/faults

soak: $(STAMP)
	$(PY) -m tests.faults.soak --minutes $(SOAK_MINUTES)

fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider --timeout 0 \
		tests/faults/test_fuzz_decoders.py tests/faults/test_api_fuzz.py

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. proto/*.proto

clean:
	rm -rf $(VENV) var build *.egg-info
