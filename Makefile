# p4reduce — the two contract targets are `make run` and `make test`.
# The venv is built from Debian's /usr/bin/python3 with system site packages, so that
# Debian's Mininet (python3-mininet) is importable beside our own dependencies.
SYSTEM_PYTHON ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
P4SRC := p4src/aggregator.p4
BUILD := build

.PHONY: all venv test lint typecheck p4 bench bench-mininet run clean help fuzz

all: venv

help:
	@echo "make test     create the venv if needed and run the whole test suite"
	@echo "make run      the main demo (Mininet when root, loopback otherwise)"
	@echo "make p4       compile $(P4SRC) into $(BUILD)/ (and with p4c when present)"
	@echo "make bench    run the benchmarks, tables under bench/results/"
	@echo "make bench-mininet  (root) p4reduce vs gloo on Mininet, plots under bench/results/"
	@echo "make lint     ruff, mypy --strict and the import layers (import-linter)"
	@echo "make fuzz     the softswitch back ends against each other, native code under AddressSanitizer"

$(STAMP): pyproject.toml
	@test -x $(SYSTEM_PYTHON) || { echo "error: $(SYSTEM_PYTHON) not found; set SYSTEM_PYTHON=/path/to/python3.11"; exit 1; }
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	@touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# mypy and import-linter see the installed layout through a link tree: setuptools maps
# p4reduce.worker to worker/ and so on, which neither tool can follow in the checkout.
LINT_TREE := $(BUILD)/lint
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	@rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)/p4reduce
	@for d in worker controller softswitch p4src examples; do ln -s $(CURDIR)/$$d $(LINT_TREE)/p4reduce/$$d; done
	@for f in p4reduce/*; do ln -s $(CURDIR)/$$f $(LINT_TREE)/p4reduce/; done
	cd $(LINT_TREE) && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml \
	  --cache-dir $(CURDIR)/.mypy_cache -p p4reduce
	cd $(LINT_TREE) && PYTHONPATH=. $(CURDIR)/$(VENV)/bin/lint-imports $(CURDIR)/pyproject.toml --no-cache

typecheck: lint

p4: $(STAMP)
	@mkdir -p $(BUILD)
	@if [ -f $(P4SRC) ]; then \
	  $(VENV)/bin/p4reduce-p4c $(P4SRC) -o $(BUILD); \
	  if command -v p4c >/dev/null 2>&1; then \
	    mkdir -p $(BUILD)/p4c && p4c --target bmv2 --arch v1model --p4runtime-files $(BUILD)/p4c/aggregator.p4info.txtpb -o $(BUILD)/p4c $(P4SRC); \
	  else echo "p4c not on PATH: built with p4reduce-p4c only"; fi; \
	else echo "$(P4SRC) does not exist yet"; exit 1; fi

bench: $(STAMP)
	@mkdir -p bench/results
	$(PY) -m bench.run $(BENCH)

# make fuzz [FUZZ_FRAMES=1000000]: random and mutated frames (truncated, wrong lengths, up
# to 9,000 bytes) through every corpus program on both softswitch back ends, compared
# frame by frame; the native code built with AddressSanitizer, whose runtime must be
# preloaded into the interpreter that opens it.
FUZZ_FRAMES ?= 1000000
fuzz: $(STAMP)
	@ASAN_LIB=$$($${CC:-cc} -print-file-name=libasan.so); \
	  if [ ! -f "$$ASAN_LIB" ]; then echo "make fuzz needs AddressSanitizer's runtime (libasan) of $${CC:-cc}"; exit 1; fi; \
	  LD_PRELOAD=$$ASAN_LIB ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  $(PY) -m tests.softswitch.difffuzz --frames $(FUZZ_FRAMES) --asan

# make run [MODEL=wide|small (small with bmv2)] [MODE=auto|loopback|mininet] [HOSTS=4] [LOSS=0]
#          [STEPS=40 for wide, 300 for small] [LANES=256 (64 with bmv2)] [TOPO=star|twotier]
#          [BW=Mbit/s, per host link] [DELAY=1ms] [SWITCH=softswitch|bmv2]  (TOPO, BW, DELAY: Mininet only)
#          [PER_LEAF=2 (TOPO=twotier: hosts per leaf; every switch aggregates)]
MODEL ?=
MODE ?= auto
HOSTS ?= 4
LOSS ?= 0
STEPS ?=
LANES ?=
TOPO ?= star
BW ?= 100
DELAY ?= 1ms
SWITCH ?= softswitch
PER_LEAF ?= 2
RUN_MININET := $(shell if [ "$(MODE)" = mininet ] || { [ "$(MODE)" = auto ] && [ "$$(id -u)" = 0 ]; }; then echo yes; fi)

run: $(STAMP) p4
	@if [ "$(RUN_MININET)" = yes ] && [ "$$(id -u)" = 0 ]; then \
	  { $(PY) -c 'import mininet.net' 2>/dev/null && command -v ethtool >/dev/null; } || \
	  { echo "installing Debian's mininet and ethtool"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mininet ethtool; }; \
	fi
	$(PY) mininet/demo.py $(if $(MODEL),--model $(MODEL)) --mode $(MODE) --hosts $(HOSTS) --loss $(LOSS) \
	  $(if $(STEPS),--steps $(STEPS)) $(if $(LANES),--lanes $(LANES)) \
	  --topo $(TOPO) --per-leaf $(PER_LEAF) --bw $(BW) --delay $(DELAY) --switch $(SWITCH)

# make bench-mininet [TOPO=twotier] [BENCH_ARGS="--workers 2,4 --sizes 1M,16M ..."]  (root; see --help)
bench-mininet: $(STAMP)
	@if [ "$$(id -u)" != 0 ]; then echo "bench-mininet needs root (Mininet): sudo make bench-mininet"; exit 1; fi
	@{ $(PY) -c 'import mininet.net' 2>/dev/null && command -v ethtool >/dev/null; } || \
	  { echo "installing Debian's mininet and ethtool"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mininet ethtool; }
	$(PY) mininet/bench_mininet.py $(if $(filter bmv2,$(SWITCH)),--switch bmv2) \
	  $(if $(filter twotier,$(TOPO)),--topo twotier --per-leaf $(PER_LEAF)) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache
