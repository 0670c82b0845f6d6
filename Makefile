# The README's two commands: `make demo` and `make test`. Both create .venv on first use; re-running is
# fast when requirements/ and setup.py have not changed (a stamp file records the last install).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ssvif-installed

# Network safety: every ROS process started from here talks on loopback only, in a domain of its own
# (override with `make ... ROS_DOMAIN_ID=N`).
ROS_DOMAIN_ID := $(shell $(PYTHON) -c 'import random; print(random.randint(1, 100))')
export ROS_DOMAIN_ID
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

DEMO_OUT ?= out/demo
# `make demo BAG=path/to/bag VISIBLE_TOPIC=/cam/image THERMAL_TOPIC=/flir/image` runs the demo on a recording
# of yours (default: generated scenes); WEIGHTS=model.safetensors replaces the shipped model.
BAG ?=
VISIBLE_TOPIC ?= /camera/image_raw
THERMAL_TOPIC ?= /thermal/image_raw
WEIGHTS ?=
# PARAMS=my_fuse.yaml: the node's parameters (e.g. your calibrated copy of config/fuse.yaml)
PARAMS ?=

.PHONY: help venv test lint format demo bench clean

help:
	@echo "make demo   set up .venv and run the demo (writes $(DEMO_OUT)/)"
	@echo "make test   set up .venv and run ruff + the test suite"
	@echo "make bench  run the benchmarks in bench/ (JSON on stdout; not onnx_ab.py, which takes two files)"

venv: $(STAMP)

$(STAMP): requirements/core.txt requirements/ros.txt requirements/dev.txt setup.py setup.cfg package.xml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m ssvif_ros.tools.demo --out $(DEMO_OUT) --visible-topic $(VISIBLE_TOPIC) --thermal-topic $(THERMAL_TOPIC) \
		$(if $(BAG),--bag $(BAG)) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(PARAMS),--params-file $(PARAMS))

# bench/onnx_ab.py compares two exports you name (see its docstring): not part of the sweep
bench: $(STAMP)
	@for b in bench/*.py; do [ $$b = bench/onnx_ab.py ] && continue; echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build install log out .pytest_cache .ruff_cache
