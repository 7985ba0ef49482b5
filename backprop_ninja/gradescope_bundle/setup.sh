#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image; the zip is unpacked in
# $ROOT/source. It installs the pinned Python dependencies and this package into a venv, then
# fetches names.txt and checks its sha256 (the run fails if the file is not the right one).
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
VENV="$ROOT/venv"
# torch must be the CPU build: the default index would pull several GB of CUDA libraries.
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

cd "$ROOT/source"
# Student code runs in a bubblewrap sandbox as another user (docs/grader.md): install it and libseccomp.
if ! command -v bwrap >/dev/null; then
    apt-get update
    apt-get install -y bubblewrap libseccomp2
fi
if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update
    apt-get install -y python3 python3-venv python3-pip
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install --extra-index-url "$TORCH_INDEX" -r requirements.txt
"$VENV/bin/python" -m pip install --no-deps .
"$VENV/bin/backprop-ninja" setup-data --dest "$ROOT/source/data/names.txt"
