# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.s3l-installed

.PHONY: demo test install lint clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev,synth]'
	touch $(STAMP)

install: $(STAMP)

# The synthetic recipe end to end (README "Quick start"); finished stages are skipped when it is run again.
# Extra recipe options: make demo DEMO_ARGS="--quick" (or e.g. DEMO_ARGS="--exp exp/other --stage 12").
demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash recipes/synthetic/run.sh $(DEMO_ARGS)

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check s3l tests recipes

clean-venv:
	rm -rf $(VENV)
