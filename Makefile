# make demo: one real send on SQLite into a local SMTP sink (var/mail/*.eml)
# make test: the test suite (PostgreSQL tests run when DIGEST_TEST_DATABASE_URL is set)
# make bench: the delivery benchmark (SUBSCRIBERS=100000; BENCH_DATABASE_URL=postgresql+psycopg://... for PostgreSQL)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUBSCRIBERS ?= 100000
BENCH_DATABASE_URL ?=
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/digest demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy digest
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.send --subscribers $(SUBSCRIBERS) $(if $(BENCH_DATABASE_URL),--database-url $(BENCH_DATABASE_URL))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check digest

typecheck: $(STAMP)
	$(BIN)/mypy digest

clean:
	rm -rf $(VENV) var/*.db var/mail test-artifacts
