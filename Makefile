# seqrec: `make run` for the demo pipeline, `make test` for the whole suite. Both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.seqrec-installed

export SPARK_LOCAL_IP ?= 127.0.0.1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PYSPARK_PYTHON := $(CURDIR)/$(PY)
export PYTHONUNBUFFERED := 1

.PHONY: setup run loop serve browser test check lint format bench-sequences cluster-up cluster-down clean

## setup: create .venv, install the pinned packages and the Delta jars (idempotent, quick when done)
setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml lib/seqrec/spark.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	$(PY) -m seqrec.spark
	@touch $@

DEMO := output/demo
DEMO_DATE := 2026-11-28

## run: the pipeline on the embedded synthetic data: build -> train -> register -> score -> show
# A week is held out for the test split: about 190 of the demo's 1,200 users have events in it
# (a single day holds about 10).
run: setup
	$(PY) jobs/build_sequences.py --source synthetic --events 30000 --output $(DEMO) --run-date $(DEMO_DATE) \
		--holdout-days 7
	$(PY) jobs/train.py --data $(DEMO) --run-date $(DEMO_DATE) --epochs 8 --num-processes 2 \
		--checkpoint-dir output/checkpoints
	$(PY) jobs/score.py --data $(DEMO) --table $(DEMO)/recommendations --run-date $(DEMO_DATE) --k 10 \
		--show 3
	@echo "Outputs: $(DEMO)/builds/ (the build CURRENT names: sequences, items, vocab, quarantine, report.json) and $(DEMO)/recommendations"
	@echo "Live recommendations: make serve, then open http://127.0.0.1:8000/ (API docs at /docs)"

LOOP := output/loop/raw
LOOP_DAYS := 2026-11-29 2026-11-30 2026-12-01
METRICS := $(DEMO)/recommendation_metrics

## loop: after `make run`, three simulated days: shoppers respond to the lists they were shown,
## then build -> measure -> decide (an online test with its days) -> score, as the nightly DAG
loop: setup
	@for day in $(LOOP_DAYS); do \
		$(PY) jobs/simulate_day.py --raw $(LOOP) --table $(DEMO)/recommendations --run-date $$day \
			--events 30000 && \
		$(PY) jobs/build_sequences.py --source canonical-csv --input '$(LOOP)/events/*/*.csv' \
			--items $(LOOP)/items --output $(DEMO) --run-date $$day --holdout-days 7 \
			--no-item-vectors && \
		$(PY) jobs/measure.py --data $(DEMO) --table $(DEMO)/recommendations \
			--metrics-table $(METRICS) --run-date $$day && \
		$(PY) jobs/promote.py --run-date $$day --require-online-win --online-days 3 \
			--metrics-table $(METRICS) --skip-if-none && \
		$(PY) jobs/score.py --data $(DEMO) --table $(DEMO)/recommendations --run-date $$day \
			--k 10 --challenger challenger --challenger-share 0.5 || exit 1; \
	done
	@echo "Daily figures: $(METRICS) (notebooks/results.ipynb plots them)"

## serve: the live service on the demo's build, model and table (run `make run` first)
serve: setup
	$(PY) jobs/serve.py --data $(DEMO) --table $(DEMO)/recommendations

## browser: Debian's chromium for the service page's test, when it is missing and apt can install it
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the page test"; \
		(apt-get install -y -q chromium >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
		echo "chromium could not be installed: the page test will be skipped"; \
	else echo "no chromium and no root apt-get: the page test will be skipped"; fi; }

## check: lint, format check and type check
check: setup
	$(VENV)/bin/ruff check lib jobs tests benchmarks airflow_dags
	$(VENV)/bin/ruff format --check lib jobs tests benchmarks airflow_dags
	$(VENV)/bin/mypy lib

format: setup
	$(VENV)/bin/ruff check --fix lib jobs tests benchmarks airflow_dags
	$(VENV)/bin/ruff format lib jobs tests benchmarks airflow_dags

## test: check, then the whole test suite
test: check browser
	$(PY) -m pytest

## bench-sequences: Spark vs DuckDB on 1 M and 10 M generated events (writes under bench_out/)
bench-sequences: setup
	$(PY) benchmarks/bench_sequences.py --events 1000000 10000000 --workdir bench_out/sequences

## cluster-up: a Spark standalone cluster on this machine (a master, 2 one-core workers) in .cluster/
cluster-up: setup
	$(PY) -m seqrec.cluster up --home .cluster

## cluster-down: stop every process of cluster-up (harmless when none runs)
cluster-down:
	$(PY) -m seqrec.cluster down --home .cluster

clean:
	rm -rf $(VENV) output bench_out .pytest_cache .mypy_cache .ruff_cache
