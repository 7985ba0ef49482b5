# Two commands for users:
#   make demo   autograde the shipped example submissions against the committed release (nbgrader runs in a
#               temporary copy of the course; only the git-ignored out/ is written, so the tree stays clean)
#   make test   run the kit's test suite
# Both create .venv (once), install the pinned requirements and set up data/names.txt
# (from $BACKPROP_NINJA_NAMES if set, else downloaded; see data/README.md).
# The other targets below are plumbing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# The venv's tools come first on PATH: nbgrader runs `alembic` by name.
export PATH := $(abspath $(BIN)):$(PATH)
# A config file that fails to load must stop nbgrader, not let it run without our hardening.
export TRAITLETS_APPLICATION_RAISE_CONFIG_FILE_ERROR := 1

.DEFAULT_GOAL := demo
.PHONY: demo test data

# No `backprop-ninja assign` here: rebuilding the committed notebooks is the instructor's explicit step.
demo: data
	$(BIN)/backprop-ninja demo

test: data
	$(BIN)/python -m pytest -q tests

# Always run: it checks the sha256 and returns at once when data/names.txt is already right.
data: $(INSTALLED)
	$(BIN)/backprop-ninja setup-data

# A stamp file, so a second `make` skips the install; it is redone when the pins or the package change.
$(INSTALLED): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install -e . --no-deps
	touch $@
