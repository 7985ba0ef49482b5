"""The notebook's check and the grader name the same mistake class, on every mistake of the fixture corpus.

Both run diagnose.py: the grader from the package, the notebook from the code `assign` wrote into its `diagnoses`
cell. They get their clues differently (the grader from the units table's shares on its replay, the notebook from
its own autograd run), which is what this test holds together. The notebook's cells run here in one namespace, as
Jupyter would run them, on the notebook's own batch, which is the grader's first replay.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from backprop_ninja import units
from backprop_ninja.grade import compare, engine
from backprop_ninja.grade.evidence import build_evidence
from backprop_ninja.notebook_diagnoses import CELL as DIAGNOSES_CELL
from tests.corpus import CORPUS, ISSUE_15_7

SETUP_UNTIL = "forward"  # the notebook's cells up to this grade_id make the forward pass that check() reads
GRADED_HERE = [u for u in units.UNITS if u.exercise in (1, 2, 3)]
# Near-misses (tests/corpus.py's "near_" entries) are right on the notebook's batch: only the grader's stress and
# float64 replays expose them, so the notebook cannot name them and is not asked to.
MISTAKES = [(s, gid) for s in CORPUS if s.kind == "mistake" and s.fault is None and not s.name.startswith("near_")
            for gid, expect in s.expected.items() if expect.status == "wrong" and units.BY_ID[gid].exercise != 4]


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


@pytest.fixture(scope="module")
def notebook(release, names_file, tmp_path_factory):
    """The release's setup cells run in one namespace, as a kernel would; returns (namespace, answer cell runner)."""
    matplotlib.use("Agg")  # in this process only: the environment stays as it was for later tests' kernels
    namespace = {"__name__": "__main__"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BACKPROP_NINJA_NAMES", str(names_file))
        patch.chdir(tmp_path_factory.mktemp("kernel"))
        for cell in release.cells:
            if cell.cell_type == "code":
                exec(compile(cell.source, _grade_id(cell) or "cell", "exec"), namespace)
            if _grade_id(cell) == SETUP_UNTIL:
                break
    assert DIAGNOSES_CELL in [_grade_id(c) for c in release.cells], "the release has no diagnoses cell"
    return namespace


@pytest.fixture(scope="module")
def grader_evidence():
    replay = engine.replay_inputs(*compare.NOTEBOOK_REPLAY)
    engine.add_reference_gradients(replay)
    return replay, build_evidence(replay)


def test_the_notebook_runs_on_the_graders_first_replay(notebook, grader_evidence):
    replay, _ = grader_evidence
    for name in ("Xb", "Yb", "hprebn", "logits"):
        assert np.array_equal(notebook[name].detach().numpy(), replay.values[name].numpy()), name


def _answers_until(unit_wanted: units.Unit, answers: dict[str, str], solutions: dict[str, str]) -> list[str]:
    """The answer cells a student runs up to and including `unit_wanted`'s, in notebook order."""
    cells = []
    for unit in GRADED_HERE:
        cells.append(answers.get(unit.grade_id, solutions[unit.grade_id]))
        if unit is unit_wanted:
            return cells
    raise AssertionError(unit_wanted.grade_id)


def _diagnose_both(submission, grade_id, notebook, grader_evidence, solutions):
    """(the notebook's diagnosis, the grader's check) of one submission's answer for `grade_id`."""
    unit = units.BY_ID[grade_id]
    for name in [k for k in notebook if k.startswith("d") and k[1:] in units.SHAPES]:
        del notebook[name]  # a fresh student: no gradient of an earlier submission left over
    for source in _answers_until(unit, submission.answers, solutions):
        exec(compile(source, unit.grade_id, "exec"), notebook)

    in_notebook = notebook["_diagnosis"](unit.var)
    answer = notebook["d" + unit.var].detach().double().numpy()
    _, evidence = grader_evidence
    return in_notebook, compare.check_answer(answer, evidence[grade_id], unit)


@pytest.mark.parametrize("submission, grade_id", MISTAKES, ids=[f"{s.name}-{g}" for s, g in MISTAKES])
def test_notebook_and_grader_name_the_same_mistake(submission, grade_id, notebook, grader_evidence, solutions):
    unit = units.BY_ID[grade_id]
    in_notebook, in_grader = _diagnose_both(submission, grade_id, notebook, grader_evidence, solutions)

    assert not in_grader.ok and in_notebook is not None
    assert in_notebook.kind == in_grader.kind, (in_notebook.message, in_grader.mistake)
    status, _ = notebook["_compare"](unit.var)
    assert status == "wrong"  # the notebook's own pass/fail agrees with the grader's on this batch


TAUGHT = [(s, gid) for s in ISSUE_15_7 for gid in s.expected]


@pytest.mark.parametrize("submission, grade_id", TAUGHT, ids=[f"{s.name}-{g}" for s, g in TAUGHT])
def test_notebook_and_grader_teach_the_same_lesson(submission, grade_id, notebook, grader_evidence, solutions):
    """Issue 15.7: the messages that name the real lesson (+= through an index, a gradient that only coincides, the
    branch a missing path belongs to, the rule behind a collapsed shape) read the same in the notebook's check."""
    in_notebook, in_grader = _diagnose_both(submission, grade_id, notebook, grader_evidence, solutions)
    for words in submission.expected[grade_id].words:
        assert words.lower() in in_grader.mistake.lower(), (words, in_grader.mistake)
        assert words.lower() in in_notebook.message.lower(), (words, in_notebook.message)
    assert "take one more step back" not in in_grader.mistake  # the coincidence is not an unfinished step
    assert "the path through `bnvar` is missing" not in in_grader.mistake  # bnvar is no use of hprebn in Exercise 1


def test_the_corpus_covers_the_main_classes():
    """The agreement above is only worth something if the corpus exercises the classes the notebook names."""
    kinds = set()
    for submission, grade_id in MISTAKES:
        words = " ".join(submission.expected[grade_id].words)
        kinds |= {k for k, w in (("sign", "sign"), ("factor", "factor"), ("keepdim", "keepdim"),
                                 ("transposed", "transposed"), ("missing_sum", "missing a sum"),
                                 ("missing_branch", "branch")) if w in words}
    assert kinds == {"sign", "factor", "keepdim", "transposed", "missing_sum", "missing_branch"}
