"""`backprop-ninja bundle gradescope --out DIR`: DIR/autograder.zip for a Gradescope programming assignment.

The zip holds, at its root: setup.sh and run_autograder (templates in gradescope_bundle/),
requirements.txt (the pinned runtime dependencies), pyproject.toml and the package source. Gradescope
unpacks it in /autograder/source, runs setup.sh once, then run_autograder per submission, which calls
`python -m backprop_ninja.bundle --autograde ROOT` (below) and always leaves a results.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
import zipfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO = PACKAGE_DIR.parent
TEMPLATES = PACKAGE_DIR / "gradescope_bundle"
EXECUTABLES = ("setup.sh", "run_autograder")
NOTEBOOK_NAME = "backprop_ninja.ipynb"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same source gives the same zip
# The grading policy chosen when the bundle was built (`--strict-rules`), read back by autograde.
POLICY_FILE = PACKAGE_DIR / "gradescope_policy.json"


def runtime_requirements(repo: Path = REPO) -> str:
    """The lines of requirements.txt for the package's own dependencies (pyproject.toml), with their pins."""
    wanted = {_name(dep) for dep in tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]}
    lines = [line.strip() for line in (repo / "requirements.txt").read_text().splitlines()]
    pinned = [line for line in lines if line and not line.startswith("#") and _name(line) in wanted]
    missing = wanted - {_name(line) for line in pinned}
    if missing:
        raise ValueError(f"{repo / 'requirements.txt'} has no pin for {', '.join(sorted(missing))}; "
                         f"add `name==version` lines for them.")
    return "# Pinned runtime dependencies of the grader (from requirements.txt).\n" + "\n".join(pinned) + "\n"


def _name(requirement: str) -> str:
    for separator in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", ";", " "):
        requirement = requirement.split(separator)[0]
    return requirement.strip().lower().replace("_", "-")


def build_gradescope_zip(out_dir: Path, repo: Path = REPO, strict_rules: bool = False, shape: str = "strict",
                        code: str = "allowlist", unit_timeout: float | None = None,
                        total_timeout: float | None = None) -> Path:
    """DIR/autograder.zip; the policies and any time limits given are stored in it (POLICY_FILE)."""
    from backprop_ninja.grade import limits

    unit_timeout = limits.UNIT_TIMEOUT if unit_timeout is None else float(unit_timeout)
    total_timeout = limits.TOTAL_TIMEOUT if total_timeout is None else float(total_timeout)
    if not (0 < unit_timeout <= total_timeout):
        raise ValueError(f"time limits: --unit-timeout ({unit_timeout:g} s) must be above 0 and at most "
                         f"--total-timeout ({total_timeout:g} s)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "autograder.zip"
    entries: list[tuple[str, bytes, bool]] = []  # (name in zip, content, executable)
    for name in EXECUTABLES:
        entries.append((name, (TEMPLATES / name).read_bytes(), True))
    entries.append(("requirements.txt", runtime_requirements(repo).encode(), False))
    entries.append(("pyproject.toml", (repo / "pyproject.toml").read_bytes(), False))
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" and path != POLICY_FILE:
            entries.append((path.relative_to(repo).as_posix(), path.read_bytes(), False))
    policy = json.dumps({"strict_rules": bool(strict_rules), "shape": shape, "code": code,
                         "unit_timeout": unit_timeout, "total_timeout": total_timeout}) + "\n"
    entries.append((POLICY_FILE.relative_to(repo).as_posix(), policy.encode(), False))
    temp = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content, executable in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    temp.replace(target)
    return target


# ---------------------------------------------------------------- inside Gradescope: one submission

def autograde(root: Path) -> dict:
    """Grade ROOT/submission/*.ipynb into ROOT/results/results.json; return what was written.

    This process is trusted: it never runs student code (the engine's sandbox does, as another user, and
    cannot see ROOT). It writes results.json only after the sandbox is gone, and only once the data
    passes validate_results.
    """
    from backprop_ninja.batch import fault_gradescope, write_json_atomically

    started = time.monotonic()
    results_file = root / "results" / "results.json"
    try:
        notebook, problem = _find_notebook(root / "submission")
        if problem:
            data = fault_gradescope(problem, _units_or_none(), time.monotonic() - started)
        else:
            data = _grade_isolated(notebook)
        validate_results(data)
    except Exception as error:  # noqa: BLE001 - the student still gets a results.json that says why
        data = fault_gradescope(f"the autograder could not grade here ({type(error).__name__}: {error}); this is "
                                f"not about your answers, tell your instructor", _units_or_none(),
                                time.monotonic() - started)
    write_json_atomically(results_file, data)
    return data


def _grade_isolated(notebook: Path) -> dict:
    from backprop_ninja.export.gradescope import to_gradescope
    from backprop_ninja.grade import isolation

    # Required; BACKPROP_NINJA_NO_ISOLATION=1 in run_autograder's environment opts out (and says so in results).
    with isolation.start(isolation.REQUIRED) as launcher:  # leaving it ends every process that ran student code
        from backprop_ninja.grade.engine import grade_notebook

        policy = _policy()
        limits = {key: float(policy[key]) for key in ("unit_timeout", "total_timeout") if key in policy}
        result = grade_notebook(notebook, launcher=launcher, strict_rules=bool(policy.get("strict_rules", False)),
                                shape=policy.get("shape", "strict"), code=policy.get("code", "allowlist"), **limits)
    return to_gradescope(result)


def _policy() -> dict:
    """The bundle's grading policies (POLICY_FILE); the defaults when the file is absent (an older bundle)."""
    try:
        return json.loads(POLICY_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def validate_results(data: dict) -> None:
    """Raise ValueError unless every test is a known unit at its own maximum, and no score exceeds it."""
    from backprop_ninja.units import BY_ID

    tests = data.get("tests")
    if not isinstance(tests, list):
        raise ValueError("results have no list of tests")
    names = [t.get("name") for t in tests if isinstance(t, dict)]
    if len(names) != len(tests) or len(set(names)) != len(names):
        raise ValueError("results repeat a test or hold something that is not one")
    for test in tests:
        unit = BY_ID.get(test["name"])
        if unit is None:
            raise ValueError(f"results name an unknown test {str(test['name'])[:40]!r}")
        score, maximum = test.get("score"), test.get("max_score")
        if maximum != unit.points or not isinstance(score, (int, float)) or not 0 <= score <= maximum:
            raise ValueError(f"results give {test['name']} {score!r} of {maximum!r}; it is worth {unit.points}")
    if abs(float(data.get("score", -1)) - sum(t["score"] for t in tests)) > 1e-9:
        raise ValueError("the total score is not the sum of the tests")


def _find_notebook(folder: Path) -> tuple[Path | None, str | None]:
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        return None, f"no .ipynb file was uploaded; upload your {NOTEBOOK_NAME}"
    named = [p for p in notebooks if p.name == NOTEBOOK_NAME]
    if named:
        return named[0], None
    if len(notebooks) == 1:
        return notebooks[0], None
    names = ", ".join(p.name for p in notebooks)
    return None, f"several notebooks were uploaded ({names}) and none is {NOTEBOOK_NAME}; upload only that one"


def _units_or_none() -> list:
    try:
        from backprop_ninja.units import UNITS
    except Exception:  # noqa: BLE001 - without torch the fault row simply lists no units
        return []
    return [(u.grade_id, float(u.points)) for u in UNITS]


# ---------------------------------------------------------------- the `backprop-ninja bundle` verb

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["gradescope"], help="the platform to bundle for")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write autograder.zip")
    parser.add_argument("--strict-rules", action="store_true",
                        help="Exercise 1 answers right by luck earn no points (default: they keep them, with a note)")
    parser.add_argument("--shape", choices=["strict", "lenient"], default="strict",
                        help="lenient: an intermediate's gradient off only by size-1 dimensions earns its points "
                             "(default strict)")
    parser.add_argument("--code", choices=["allowlist", "any"], default="allowlist",
                        help="any: answer cells may hold any Python (default allowlist: only what a gradient needs)")
    from backprop_ninja.grade.cli import add_time_limit_arguments

    add_time_limit_arguments(parser, "; keep it under the assignment's autograder timeout on Gradescope")


def run(args: argparse.Namespace) -> int:
    try:
        path = build_gradescope_zip(args.out, strict_rules=args.strict_rules, shape=args.shape, code=args.code,
                                    unit_timeout=args.unit_timeout, total_timeout=args.total_timeout)
    except (OSError, ValueError) as error:
        print(f"bundle: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path}: upload it as the autograder of a Gradescope programming assignment")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--autograde":
        written = autograde(Path(sys.argv[2]))
        print(json.dumps({"score": written.get("score"), "output": written.get("output", "")})[:2000])
        sys.exit(0)
    sys.exit("usage: python -m backprop_ninja.bundle --autograde ROOT")
