# Two commands do all set-up on a fresh machine:
#   make lab    create .venv if missing, install, open the tutorials in JupyterLab
#   make test   create .venv if missing, install, run the whole test suite
#   make lint   ruff: lint and format check (configured in pyproject.toml)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU use works with any build; override for another platform, e.g.
#   make test TORCH_SPEC="torch==2.9.1 torchvision==0.24.1"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install lab test lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[all]"
	@echo "compiling UMAP's numba kernels for small and large maps once (kept in numba's disk cache)"
	$(BIN)/python -c "from medsynth_explore.session import warm_up_umap; warm_up_umap(background=False)"
	touch $(STAMP)

install: $(STAMP)

lab: install
	$(BIN)/jupyter lab notebooks/

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
