# plasticore: the two commands of the quick start.
#   make demo   trains a small network with STDP and prints what it learned
#   make test   runs the whole test suite
# Both create (or reuse) a virtual environment in .venv and install what they need from PyPI.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade "pip>=23.2"
	$(VPY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m plasticore.host.demo

test: $(STAMP)
	$(VPY) -m pytest -n 2 tests

clean:
	rm -rf build .pytest_cache
