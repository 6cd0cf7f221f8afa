# make demo: one real send on SQLite into a local SMTP sink (var/mail/*.eml)
# make test: the test suite (PostgreSQL tests run when DIGEST_TEST_DATABASE_URL is set)
# make messages: re-extract the templates' strings (babel.cfg) and merge them into every catalog
# make bench: the delivery benchmark (SUBSCRIBERS=100000; BENCH_DATABASE_URL=postgresql+psycopg://... for PostgreSQL)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUBSCRIBERS ?= 100000
BENCH_DATABASE_URL ?=
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench messages clean

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
	$(BIN)/pytest -q -n 3

bench: $(STAMP)
	$(BIN)/python -m bench.send --subscribers $(SUBSCRIBERS) $(if $(BENCH_DATABASE_URL),--database-url $(BENCH_DATABASE_URL))

LOCALES := templates/locale

messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --project=digest \
		--copyright-holder="digest contributors" -o $(LOCALES)/messages.pot .
	$(BIN)/pybabel update -i $(LOCALES)/messages.pot -d $(LOCALES) --no-fuzzy-matching \
		--ignore-obsolete --width=100

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check digest

typecheck: $(STAMP)
	$(BIN)/mypy digest

clean:
	rm -rf $(VENV) var/*.db var/mail test-artifacts
