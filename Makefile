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
	$(BIN)/python -m pip install --quiet -e '.[all]'
	# The reference PGD the immunity tests compare against. Its attacks need only torch;
	# its declared dependencies would pin an old requests and pull torchvision.
	$(BIN)/python -m pip install --quiet --no-deps 'torchattacks==3.5.1'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/twinkit demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) .twinkit .pytest_cache .mypy_cache .ruff_cache
