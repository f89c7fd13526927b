# Every target sets itself up from a fresh clone: it creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck check demo run screenshots bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Two phases (tests/run_suite.py): the suite on two pytest-xdist workers, then the few
# tests marked serial alone; fails if either fails. XCONVERSIONS_TEST_WORKERS=N: N workers.
test: $(STAMP)
	$(BIN)/python -m tests.run_suite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy django_xconversions

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python bench/drain.py --db sqlite --events 100000 --repeat 3
	$(BIN)/python bench/drain.py --db postgres --events 100000 --repeat 3
	$(BIN)/python bench/drain.py --db postgres --events 1000000 --repeat 1 --output bench/results/drain-postgres-1m.json
	$(BIN)/python bench/memory.py --db sqlite --sizes 100000 1000000
	$(BIN)/python bench/memory.py --db postgres --sizes 100000 1000000
	$(BIN)/python bench/budget.py --events-per-window 20000 --window 10 --windows 4
	$(BIN)/python bench/middleware.py --requests 20000 --repeat 7
	$(BIN)/python bench/chaos.py --events 20000 --workers 4
	$(BIN)/python bench/isolation.py --bad 1 2 3 5 10 40 --placements 50
	$(BIN)/python bench/admin_scale.py --rows 10000000 --repeat 7
	$(BIN)/python bench/latency.py --rate 50 --seconds 20
	$(BIN)/python bench/fairness.py --accounts 200 --pending 2000 --workers 4
	$(BIN)/python bench/report.py

demo: $(STAMP)
	$(BIN)/python example_project/manage.py demo

# The example shop on http://127.0.0.1:8000/ with the local X emulator; Ctrl-C stops it all.
# Other ports: make run PORT=8001 EMULATOR_PORT=8766 (the emulator's default is 8765).
run: $(STAMP)
	$(BIN)/python example_project/manage.py run_shop$(if $(PORT), --port $(PORT))$(if $(EMULATOR_PORT), --emulator-port $(EMULATOR_PORT))

# docs/screenshots/*.png, the README's pictures: the example shop with two weeks of history
# and the emulator, a purchase and the admin in Debian's Chromium at 1366 px (no network).
screenshots: $(STAMP)
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
