# Two commands set everything up from nothing:
#   make demo   -> virtual environment + the whole pipeline on built-in phantom data
#   make test   -> virtual environment + the test suite
VENV      ?= .venv
PYTHON    ?= python3
# A known-good torch for nnunetv2 2.8 (its timm import needs a matching torchvision).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR  ?= demo_output
DEMO_ARGS ?=

BIN := $(VENV)/bin

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[test]"
	touch $@

demo: setup
	$(BIN)/nnunet-tavr demo -o $(DEMO_DIR) $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
