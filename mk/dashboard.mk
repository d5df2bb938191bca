# Per-commit history and the dashboard (issue 6). Included by the Makefile.
PYTHON ?= python3
RANGE ?= HEAD~20..HEAD
RESULTS ?= results
SITE ?= build/site  # untracked: the site is built on demand or published from CI, never committed

.PHONY: history dashboard test-dashboard browser-deps dashboard-perf

# Measure each commit of RANGE with its own code into $(RESULTS)/<machine>/<sha>.json.
# Each commit is built in place with this environment, so it needs the build requirements.
history: install
	$(BIN)/python -m pip install -q -U setuptools "Cython>=3.0" "PyYAML>=6" wheel
	$(BIN)/bench history $(RANGE) --results $(RESULTS)

# Static site from $(RESULTS) (opens from disk, no network).
dashboard: install
	$(BIN)/bench dashboard --results $(RESULTS) -o $(SITE)

test-dashboard: install
	$(BIN)/python -m pytest -q tests/test_history.py tests/test_dashboard.py tests/browser

# Headless chromium for tests/browser (skipped, with a message, without it).
browser-deps:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

# Build time for a synthetic 1,000 commits x 100 benchmarks history, plain .json and .json.gz
# (benchmarks/dashboard.py; figures in docs/dashboard.md, stored in benchmarks/out/dashboard.json).
dashboard-perf: install
	$(BIN)/python benchmarks/dashboard.py --commits 1000 --benchmarks 100
