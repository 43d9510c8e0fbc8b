# The two commands of the README. Each sets up .venv (once, again when pyproject.toml
# changes) and runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "twinkit needs Python 3.11 or newer (set PYTHON=python3.x)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/twinkit demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The tests run on SQLite, and on PostgreSQL too when a server answers at TEST_PG_URL:
# .ci/services installs and starts one where it can (as root; it skips elsewhere). An URL
# already in TWINKIT_TEST_PG_URL is used as it is, and a server that does not answer there
# fails the PostgreSQL tests instead of skipping them.
TEST_PG_URL := postgresql+psycopg://twinkit:twinkit@127.0.0.1:5432/twinkit_test
PG_ANSWERS := import psycopg, sys; psycopg.connect(sys.argv[1], connect_timeout=5).close()

test: lint
	bash .ci/services
	@url="$${TWINKIT_TEST_PG_URL:-}"; \
	if [ -z "$$url" ]; then \
		if $(BIN)/python -c '$(PG_ANSWERS)' '$(subst +psycopg,,$(TEST_PG_URL))' 2>/dev/null; \
		then url='$(TEST_PG_URL)'; \
		else echo "no PostgreSQL at $(TEST_PG_URL): testing on SQLite only"; fi; \
	fi; \
	echo "TWINKIT_TEST_PG_URL=$$url"; \
	TWINKIT_TEST_PG_URL="$$url" $(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) .twinkit .pytest_cache .mypy_cache .ruff_cache
