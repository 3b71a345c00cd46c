# Two commands do the whole set-up on a fresh machine:
#   make run    create .venv if absent, install ioc, start it with config.yaml (demo)
#   make test   create .venv if absent, install ioc with its test extras, run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config.yaml
# The demo simulator's address (HOST:PORT); empty: config.yaml's own (127.0.0.1:8081).
SIM    ?=

.PHONY: run test lint check bench clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	@if [ "$(CONFIG)" = config.yaml ]; then \
	  if [ -n "$$IOC_DEMO_TOKEN" ]; then echo "demo console token: the value of IOC_DEMO_TOKEN"; \
	  else echo "demo console token: demo-operator-token-public (public demo default;" \
	    "set IOC_DEMO_TOKEN to your own)"; fi; fi
	IOC_SIM_LISTEN=$(SIM) $(BIN)/ioc run -c $(CONFIG)

check: $(VENV)/.installed
	IOC_SIM_LISTEN=$(SIM) $(BIN)/ioc check -c $(CONFIG)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ruff (style and bugs), mypy (types, [tool.mypy]) and import-linter (the layers and no import
# cycles, [tool.importlinter]); CI runs it beside make test.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check ioc collectors alerts web service tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(VENV)/.installed-test
	$(BIN)/python bench/store_ingest.py
	$(BIN)/python bench/query_range.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/alert_eval.py

clean:
	rm -rf $(VENV) var .pytest_cache

# Re-resolve every dependency in a scratch venv and write the exact versions to requirements.lock.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -e '.[test]'
	{ sed -n '/^#/p' requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable; } \
	  > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .lock-venv
