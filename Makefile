# effray: `make run` and `make test` each set everything up from nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.effray-installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CARS   := data/stanford-cars-sample/train_labels.csv
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data run test lint format clean

setup: $(STAMP) data $(CARS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The real dataset on this machine: Debian's Fashion-MNIST (70k images, IDX .gz).
data: $(FMNIST)
$(FMNIST):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist \
	  || ($(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist)

# Stanford Cars cannot be downloaded: a small folder in the thesis's layout, written by
# effray, is the thesis specs' default data.root, so they validate and run tiny as they are.
$(CARS): | $(STAMP)
	rm -rf data/stanford-cars-sample
	$(VENV)/bin/effray make-sample-cars data/stanford-cars-sample

run: setup
	$(VENV)/bin/effray run experiments/quickstart.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check effray tests benchmarks
	$(VENV)/bin/ruff format --check effray tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format effray tests benchmarks
	$(VENV)/bin/ruff check --fix effray tests benchmarks

test: setup lint
	$(PY) -m pytest -q -ra

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
