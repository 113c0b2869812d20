# Two entry points: `make demo` (the whole pipeline on the embedded digits) and `make test`.
# Both create .venv when missing and install hant with pip, which resolves torch and
# torchvision together from the package registry (timm needs a matching pair).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hant-installed

.PHONY: install demo test slow clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/hant run recipes/demo.yaml

test: install
	$(BIN)/python -m hant.kernels
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# The slow tests: the SIGKILL matrix (tests/faults: every stage and training loop killed at random
# points, resumed, compared), one test at a time so that each kill lands inside its stage.
slow: install
	$(BIN)/python -m hant.kernels
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf runs .pytest_cache
