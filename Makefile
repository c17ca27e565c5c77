# derivlake: `make demo` runs the product, `make test` proves it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/include
export PYTHONDONTWRITEBYTECODE := 1
# pytest-xdist workers: each starts its own broker, Postgres and S3 servers; most tests wait on
# timeouts and subprocesses, so two halve the run even on two cores
TEST_WORKERS ?= 2

.PHONY: venv demo test lint format bench chaos up down clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@# the package lives in include/ (Airflow's convention); a .pth puts it on every venv process's path
	$(PY) -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "derivlake.pth").write_text("$(CURDIR)/include\n")'
	@touch $(STAMP)

# the S3-compatible server of the object-storage tests, in a venv of its own (requirements-s3server.txt)
S3_VENV := .venv-s3server
S3_STAMP := $(S3_VENV)/.installed
$(S3_STAMP): requirements-s3server.txt
	@test -x $(S3_VENV)/bin/python || $(PYTHON) -m venv $(S3_VENV)
	$(S3_VENV)/bin/python -m pip install --quiet -r requirements-s3server.txt
	@touch $(S3_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@bash scripts/demo.sh

test: $(STAMP) $(S3_STAMP)
	$(VENV)/bin/ruff check include dags plugins tests bench deploy
	$(VENV)/bin/ruff format --check include dags plugins tests bench deploy
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check include dags plugins tests bench deploy
	$(VENV)/bin/ruff format --check include dags plugins tests bench deploy

format: $(STAMP)
	$(VENV)/bin/ruff format include dags plugins tests bench deploy
	$(VENV)/bin/ruff check --fix include dags plugins tests bench deploy

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "# $$b"; $(PY) $$b || exit 1; done

chaos: $(STAMP)
	@# 200 trials of ~2 s each, on each catalog: longer than the per-test timeout of `make test`
	DERIVLAKE_CHAOS_TRIALS=200 $(PY) -m pytest -q -n $(TEST_WORKERS) --timeout 1800 tests/integration/test_drain.py -k kill_9 $(PYTEST_ARGS)

up:
	docker compose up -d --build

down:
	docker compose down

clean:
	-$(PY) -m derivlake broker stop
	rm -rf .local
