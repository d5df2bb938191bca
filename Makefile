# make run:  measure the default suite on every backend this machine offers
# make test: the test suite
# Both create a virtual environment (.venv) unless one is active, and install the project into it.
PYTHON ?= python3
ifdef VIRTUAL_ENV
BIN := $(VIRTUAL_ENV)/bin
else
BIN := .venv/bin
endif
STAMP := build/.installed
SOURCES := pyproject.toml setup.py $(wildcard _native/*.c _native/*.h _native/*.pyx) \
	configs/conventions.yaml configs/leaves.yaml bench/gen/codegen.py bench/gen/crossings.py bench/config.py

.PHONY: install run quick test bench-overhead bench-repro bench-verdicts clean
install: $(STAMP)

$(STAMP): $(SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv .venv
	$(BIN)/python -m pip install -q --upgrade pip
	rm -f _native/gen/sb_generated.c
	$(BIN)/python -m pip install -q -e '.[test]'
	@mkdir -p build && touch $@

run: install
	$(BIN)/bench run

quick: install
	$(BIN)/bench run --suite configs/quick.yaml

test: install
	$(BIN)/python -m pytest -q

# Harness overhead: the C loop against one-call-per-Python-call timing (pytest-benchmark).
bench-overhead: install
	$(BIN)/python -m pytest -q benchmarks --benchmark-only

# A/A experiment: six back-to-back runs of this build; do figures repeat? (benchmarks/repro.py)
bench-repro: install
	$(BIN)/python benchmarks/repro.py --runs 6

# Are compare's verdicts to be trusted?  A/A false alarms, power on planted 1% and 0.5% changes,
# bisect of a synthetic history (~1-1.5 h on a 2-core VM; benchmarks/out/verdicts-<machine>.md).
bench-verdicts: install
	$(BIN)/python benchmarks/verdicts.py

clean:
	rm -rf build _native/gen _native/_core.c bench/native/_core*.so *.egg-info

-include mk/*.mk
