"""The student's side, as on Colab: the release, filled with the solutions, runs top to bottom in a fresh venv that
has only torch, matplotlib, tqdm, ipykernel and nbclient (the pins of requirements.txt): no kit, no nbgrader.

The venv is made once per session under the test's own temporary folder; pip's cache makes later runs quick.
"""
from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import nbformat
import pytest

from backprop_ninja import examples
from backprop_ninja.assign import REPO
from folders import own_folder

STUDENT_PACKAGES = ("torch", "matplotlib", "tqdm", "ipykernel", "nbclient")
SHORT_TRAINING_STEPS = "200"
RUN = """
import json, sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[3])
"""


def pinned(names: tuple[str, ...]) -> list[str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name = line.split("==")[0].strip().lower()
            pins[name] = line.strip()
    missing = [name for name in names if name not in pins]
    assert not missing, f"requirements.txt has no pin for {missing}"
    return [pins[name] for name in names]


@pytest.fixture(scope="module")
def bare_python():
    """A fresh venv's python with only the student's packages."""
    with own_folder("backprop-ninja-colab-", "BACKPROP_NINJA_KEEP_COLAB_VENV") as folder:
        venv.create(folder / "venv", with_pip=True)
        python = folder / "venv" / "bin" / "python"
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", *pinned(STUDENT_PACKAGES)],
                                 capture_output=True, text=True, timeout=900)
        assert install.returncode == 0, install.stderr[-3000:]
        yield python


def test_the_filled_release_runs_top_to_bottom_with_only_the_students_packages(bare_python, release, solutions,
                                                                                names_file, tmp_path):
    alone = subprocess.run([str(bare_python), "-c", "import importlib.util as u; "
                            "print([m for m in ('backprop_ninja', 'nbgrader', 'jupytext') if u.find_spec(m)])"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert alone.stdout.strip() == "[]", alone.stdout + alone.stderr  # neither the kit nor nbgrader is there
    notebook, done = tmp_path / "backprop_ninja.ipynb", tmp_path / "done.ipynb"
    nbformat.write(examples.filled(release, solutions), notebook)
    env = {"PATH": str(bare_python.parent), "HOME": str(tmp_path), "BACKPROP_NINJA_NAMES": str(names_file),
           "BACKPROP_NINJA_STEPS": SHORT_TRAINING_STEPS, "MPLBACKEND": "Agg"}
    ran = subprocess.run([str(bare_python), "-c", RUN, str(notebook), str(tmp_path), str(done)], env=env,
                         capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-4000:]
    code_cells = [cell for cell in nbformat.read(done, as_version=4).cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code_cells if cell.source.strip())  # every cell ran
    outputs = [out for cell in code_cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.output_type == "error"]
    text = json.dumps([out.get("text", "") for out in outputs if out.output_type == "stream"])
    assert "val" in text.lower()  # Exercise 4 trained and reported its losses
