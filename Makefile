# Two commands on a fresh machine:
#   make reproduce   install, fetch the datasets, run the paper reproduction (quick profile) + report
#   make test        install, fetch the datasets, run the test suite
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install data test reproduce baseline clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# CPU torch from the local wheel first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

data: install
	$(BIN)/ctfrpu data fetch
	$(BIN)/ctfrpu data verify

test: data
	$(BIN)/python -m pytest -q

reproduce: data
	$(BIN)/ctfrpu reproduce --profile quick

baseline: data
	$(BIN)/ctfrpu train --dataset mnist --epochs 1 --seed 0

clean:
	rm -rf $(VENV) build *.egg-info
