"""Nothing in a box knows an answer, on every install layout (issue 13, item 2).

The box binds the Python runtime and site-packages read-only; a wheel or `pip install .` (what the Gradescope
bundle's setup.sh does) puts the whole kit there, grade/canary.py with every reference cell included.
isolation.kit_masks covers those paths with empty read-only folders. These tests check the masks on fake layouts,
then install the kit wheel-style into a throwaway venv and grade from it (CLI, and the Gradescope layout): answer
cells walk every file the box can see, read it, and fail on any reference answer line.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from backprop_ninja import bundle, units
from backprop_ninja.grade import isolation
from backprop_ninja.grade.canary import REFERENCE_CELLS
from notebooks import write_submission

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "source" / "backprop_ninja.py"
# A line that assigns a gradient (`dW2 = h.T @ dlogits`, `dlogprobs[range(n), Yb] = -1.0 / n`, `dx += ...`).
GRADIENT_LINE = re.compile(r"^d\w+(\[[^\]]*\])?\s*[-+*/@]?=\s*\S")
# The walk (about 2.6 GB in 212,000 files) is shared out between all of Exercise 1's answer cells, so that each
# stays well within its unit's time limit even on a loaded machine (with 12, the first one, which also lists the
# box, once took more than 60 s).
SLICES = len(units.EXERCISE_1)  # 26
UNIT_TIMEOUT, TOTAL_TIMEOUT = 120, 600  # generous: the defaults are for answers, not for reading a whole box
READ_LIMIT = 2 << 20  # files up to this size are read whole (sources, bytecode, notebooks, text); ELF files are not
CONTROL_FILE = "/sandbox/lib/sandboxed/wire.py"  # the worker's own code: visible, and holds CONTROL_LINE
CONTROL_LINE = 'PREFIX = struct.Struct(">II")'


def normalized(line: str) -> str:
    return line.split("#")[0].strip()


def answer_lines() -> set[str]:
    """The reference answers' gradient lines: every cell of canary.py, every solution block of the source."""
    cells = list(REFERENCE_CELLS.values())
    cells += re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", SOURCE.read_text(encoding="utf-8"), re.S)
    found = {normalized(line) for cell in cells for line in cell.splitlines()}
    return {line for line in found if GRADIENT_LINE.match(line) and len(line) >= 12}


# The cell sees only hex strings, so the answers are nowhere in the cell's own text. It lists the box once per
# worker (cached on `sys`), checks its slice of the files, and raises what it found: the verdict's message is the
# only thing a cell can tell the grader. "/backprop_ninja/" in a path is a leak by itself: the kit's package.
WALKER = r'''
import os, re, stat, sys
NEEDLES = {bytes.fromhex(h) for h in %(needles)r}
CONTROL = bytes.fromhex(%(control)r)
# Where a gradient is assigned (`dh = `, `dlogprobs[range(n), Yb] = `, `dx += `): in a source line, inside a
# string constant (a one-line cell is `"dh = dlogits @ W2.T",` in canary.py), or amid bytecode.
# Zero width, so that every `d` is tried: in bytecode a name may follow other letters with nothing between.
ASSIGNMENT = re.compile(rb"(?=(d[A-Za-z0-9_]*)(?:\[[^\n\]]{0,80}\])? ?[-+*/@]?= )")
BY_NAME = {}
for needle in NEEDLES:
    BY_NAME.setdefault(ASSIGNMENT.match(needle).group(1), []).append(needle)

def answers_in(data):
    found = set()
    if b"= " in data:
        for match in ASSIGNMENT.finditer(data):
            found.update(n for n in BY_NAME.get(match.group(1), ()) if data.startswith(n, match.start()))
    return found

def listing():
    state = getattr(sys, "box_view", None)
    if state is None:
        files = []
        for top in sorted(os.listdir("/")):
            if top in ("proc", "sys", "dev") or os.path.islink("/" + top):
                continue
            for folder, _, names in os.walk("/" + top):
                for name in names:
                    path = os.path.join(folder, name)
                    try:
                        info = os.lstat(path)
                    except OSError:
                        continue
                    if stat.S_ISREG(info.st_mode):
                        files.append((path, info.st_size))
        state = sys.box_view = {"files": files}
    return state

def check(files, everything):
    named = [path for path, _ in everything if "/backprop_ninja/" in path]
    if named:
        return "BOXVIEW LEAK by name " + named[0][:200]
    read = 0
    for path, size in files:
        if size > %(limit)d:
            continue
        try:
            with open(path, "rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    continue
                handle.seek(0)
                data = handle.read()
        except OSError:
            continue
        read += len(data)
        hits = answers_in(data)
        if hits:
            return "BOXVIEW LEAK " + path[:150] + ": " + sorted(hits)[0].decode(errors="replace")[:100]
    seen = {path for path, _ in everything}
    with open(%(control_file)r, "rb") as handle:
        control = CONTROL in handle.read()
    return ("BOXVIEW CLEAN slice=%%d files=%%d read=%%d control=%%d worker=%%d torch=%%d" %% (
        %(k)d, len(everything), read, control, %(control_file)r in seen,
        "/sandbox/site-packages/torch/__init__.py" in seen))

# (the lines above are the detector; tests/test_box_view.py runs them alone, too)
state = listing()
if %(k)d not in state:
    state[%(k)d] = check(state["files"][%(k)d::%(slices)d], state["files"])
raise RuntimeError(state[%(k)d])
'''


def walker_cells() -> dict[str, str]:
    needles = sorted(line.encode().hex() for line in answer_lines())
    cells = {}
    for k, unit in enumerate(units.EXERCISE_1[:SLICES]):
        cells[unit.grade_id] = WALKER % {"needles": needles, "control": CONTROL_LINE.encode().hex(),
                                         "limit": READ_LIMIT, "control_file": CONTROL_FILE, "k": k,
                                         "slices": SLICES}
    return cells


def test_the_walker_finds_every_answer_line_in_source_and_bytecode(tmp_path):
    """The detector the boxes run, run here on the kit's own canary.py and its bytecode: it finds every line."""
    import py_compile

    detector = WALKER.split("# (the lines above")[0] % {"needles": sorted(n.encode().hex() for n in answer_lines()),
                                                        "control": "", "limit": 0, "control_file": "", "k": 0,
                                                        "slices": 1}
    space: dict = {}
    exec(compile(detector, "<walker>", "exec"), space)
    canary = REPO / "backprop_ninja" / "grade" / "canary.py"
    bytecode = py_compile.compile(str(canary), cfile=str(tmp_path / "canary.pyc"), doraise=True)
    wanted = {line.encode() for line in answer_lines()} & {
        normalized(line).encode() for cell in REFERENCE_CELLS.values() for line in cell.splitlines()}
    assert len(wanted) > 25
    for path in (str(canary), bytecode):
        found = space["answers_in"](Path(path).read_bytes())
        assert wanted <= found, (path, sorted(wanted - found)[:3])


def assert_box_saw_no_answer(messages: dict[str, str]) -> None:
    """Every slice of the walk reported, none found an answer line, and the walk really read the box."""
    reports = [messages[u.grade_id] for u in units.EXERCISE_1[:SLICES]]
    leaks = [m for m in reports if "BOXVIEW LEAK" in m]
    assert not leaks, leaks[0]
    found = [re.search(r"BOXVIEW CLEAN slice=(\d+) files=(\d+) read=(\d+) control=(\d) worker=(\d) torch=(\d)", m)
             for m in reports]
    assert all(found), [m for m, f in zip(reports, found) if not f][0]
    slices, files, read, control, worker, torch = zip(*[[int(g) for g in f.groups()] for f in found])
    assert sorted(slices) == list(range(SLICES))
    assert set(control) == set(worker) == set(torch) == {1}, reports[0]  # the control line found; worker, torch seen
    assert min(files) > 1000  # it saw the runtime and site-packages, not an empty box
    assert sum(read) > 50 << 20  # and read them


# ---- the masks, on fake layouts (no sandbox needed) ----

def make_kit(folder: Path) -> Path:
    (folder / "grade").mkdir(parents=True)
    (folder / "grade" / "canary.py").write_text("dprobs = dlogprobs / probs\n")
    (folder / "sandboxed").mkdir()
    return folder


def test_masks_cover_the_kit_in_every_layout(tmp_path):
    runtime, venv_site, system = tmp_path / "runtime", tmp_path / "venv" / "site-packages", tmp_path / "system"
    runtime_site = runtime / "lib" / "python3.11" / "site-packages"
    make_kit(runtime_site / "backprop_ninja")  # `pip install .` into the runtime's own site-packages
    (runtime_site / "backprop_ninja-0.1.0.dist-info").mkdir()
    for name in ("RECORD", "METADATA", "direct_url.json"):
        (runtime_site / "backprop_ninja-0.1.0.dist-info" / name).write_text("backprop_ninja/grade/canary.py\n")
    checkout = system / "src" / "kit"  # an editable install whose checkout sits under a bound tree
    make_kit(checkout / "backprop_ninja")
    (checkout / "pyproject.toml").write_text("[project]\n")
    venv_site.mkdir(parents=True)
    (venv_site / "__editable__.backprop_ninja-0.1.0.pth").write_text(f"{checkout}\n")
    (venv_site / "__editable___backprop_ninja_0_1_0_finder.py").write_text(
        f"MAPPING = {{'backprop_ninja': '{checkout / 'backprop_ninja'}'}}\n")
    (venv_site / "torch").mkdir()
    grader_copy = make_kit(tmp_path / "elsewhere" / "backprop_ninja")  # the kit the grader runs: not bound
    trees = [(str(system), "/usr"), (str(runtime), "/sandbox/python"), (str(venv_site), "/sandbox/site-packages")]

    masks = isolation.kit_masks(trees, package_dir=grader_copy, search_path=[])

    assert masks == [
        ("/sandbox/python/lib/python3.11/site-packages/backprop_ninja", True),
        ("/sandbox/python/lib/python3.11/site-packages/backprop_ninja-0.1.0.dist-info/RECORD", False),
        ("/sandbox/python/lib/python3.11/site-packages/backprop_ninja-0.1.0.dist-info/direct_url.json", False),
        ("/sandbox/site-packages/__editable__.backprop_ninja-0.1.0.pth", False),
        ("/sandbox/site-packages/__editable___backprop_ninja_0_1_0_finder.py", False),
        ("/usr/src/kit", True),  # the whole checkout (source/, solutions/), its package inside it
    ]


def test_the_grader_own_package_is_masked_when_a_bound_tree_holds_it(tmp_path):
    site = tmp_path / "site-packages"
    package = make_kit(site / "backprop_ninja")
    (site / "backprop_ninja.pth").write_text("/nowhere/at/all\n")  # names a folder that does not exist
    masks = isolation.kit_masks([(str(site), "/sandbox/site-packages")], package_dir=package, search_path=[])
    assert masks == [("/sandbox/site-packages/backprop_ninja", True),
                     ("/sandbox/site-packages/backprop_ninja.pth", False)]


def test_nothing_is_masked_outside_the_bound_trees(tmp_path):
    site = tmp_path / "site-packages"
    site.mkdir()
    package = make_kit(tmp_path / "checkout" / "backprop_ninja")
    (tmp_path / "checkout" / "pyproject.toml").write_text("")
    assert isolation.kit_masks([(str(site), "/sandbox/site-packages")], package_dir=package, search_path=[]) == []


@pytest.mark.isolation
def test_a_masked_kit_is_empty_and_read_only_inside_bwrap(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    make_kit(site / "backprop_ninja")
    (site / "backprop_ninja-0.1.0.dist-info").mkdir()
    (site / "backprop_ninja-0.1.0.dist-info" / "RECORD").write_text("backprop_ninja/grade/canary.py,sha256=x\n")
    (site / "backprop_ninja-0.1.0.dist-info" / "METADATA").write_text("Name: backprop-ninja\n")
    monkeypatch.setattr(isolation, "_site_packages", lambda: str(site))
    inside = isolation.INSIDE_SITE
    script = (f"ls -A {inside}/backprop_ninja; echo rc=$?; cat {inside}/backprop_ninja-0.1.0.dist-info/RECORD; "
              f"cat {inside}/backprop_ninja-0.1.0.dist-info/METADATA; "
              f"touch {inside}/backprop_ninja/planted 2>/dev/null || echo read-only")
    done = subprocess.run(isolation.bwrap_command(["/bin/sh", "-c", script]), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["rc=0", "Name: backprop-ninja", "read-only", ""]


# ---- a wheel-style install and the Gradescope layout, graded for real ----

def _site_packages_of(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A throwaway venv whose site-packages holds the kit as a wheel installs it (package, bytecode, metadata),
    beside hard links to this venv's dependencies (same disk: seconds, no copy of torch)."""
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = _site_packages_of(venv)
    shutil.rmtree(site)
    here = Path(sysconfig.get_paths()["purelib"])
    subprocess.run(["cp", "-al", str(here), str(site)], check=True, timeout=120)
    for entry in site.iterdir():  # this checkout's own (editable) install goes; the wheel-style one comes in
        if "backprop_ninja" in entry.name:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    shutil.copytree(REPO / "backprop_ninja", site / "backprop_ninja",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(site / "backprop_ninja")],
                   check=True, timeout=120)
    info = site / "backprop_ninja-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: backprop-ninja\nVersion: 0.1.0\n")
    (info / "top_level.txt").write_text("backprop_ninja\n")
    (info / "RECORD").write_text("".join(f"{p.relative_to(site)},,\n" for p in (site / "backprop_ninja").rglob("*")
                                         if p.is_file()))
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import backprop_ninja; print(backprop_ninja.__file__)"],
                           cwd=venv, capture_output=True, text=True, timeout=60, env=grading_env(Path("/nowhere")))
    assert where.stdout.strip() == str(site / "backprop_ninja" / "__init__.py"), where.stderr
    return venv


def grading_env(names_file: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", isolation.NO_ISOLATION_ENV)}
    return {**env, "BACKPROP_NINJA_NAMES": str(names_file), **extra}


@pytest.mark.isolation
def test_a_box_graded_from_a_wheel_install_sees_no_answer(wheel_venv, tmp_path, names_file):
    notebook = write_submission(tmp_path / "walker.ipynb", walker_cells())
    done = subprocess.run([str(wheel_venv / "bin" / "python"), "-m", "backprop_ninja", "grade", str(notebook),
                           "--json", "--code", "any", "--unit-timeout", str(UNIT_TIMEOUT),
                           "--total-timeout", str(TOTAL_TIMEOUT)],
                          cwd=tmp_path, env=grading_env(names_file), capture_output=True, text=True,
                          timeout=TOTAL_TIMEOUT + 120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert results["extra_data"]["isolation"].startswith("bwrap"), results["extra_data"]
    assert_box_saw_no_answer({t["name"]: t["output"] for t in results["tests"]})


@pytest.mark.isolation
def test_a_box_in_the_gradescope_layout_sees_no_answer(wheel_venv, tmp_path, names_file):
    root = tmp_path / "autograder"
    archive = bundle.build_gradescope_zip(tmp_path / "zip", code="any", unit_timeout=UNIT_TIMEOUT,
                                          total_timeout=TOTAL_TIMEOUT)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():
            (root / "source" / info.filename).chmod(info.external_attr >> 16 & 0o777)
    (root / "source" / "data").mkdir()
    shutil.copy(names_file, root / "source" / "data" / "names.txt")
    (root / "submission").mkdir()
    write_submission(root / "submission" / "backprop_ninja.ipynb", walker_cells())
    env = grading_env(names_file, AUTOGRADER_ROOT=str(root), BACKPROP_NINJA_PYTHON=str(wheel_venv / "bin" / "python"))
    env.pop("BACKPROP_NINJA_NAMES")  # run_autograder's default: ROOT/source/data/names.txt
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=TOTAL_TIMEOUT + 120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["extra_data"]["isolation"].startswith("bwrap"), results.get("output")
    assert_box_saw_no_answer({t["name"]: t["output"] for t in results["tests"]})
