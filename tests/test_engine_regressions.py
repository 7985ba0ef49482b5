"""Regressions: engine bugs found while building the corpus (tests/corpus.py), each now fixed. Each test
states the right behaviour and failed before its fix.
"""
from __future__ import annotations

import uuid


from backprop_ninja.export import format_table
from backprop_ninja.grade import grade_notebook
from backprop_ninja.grade.verdict import ANY_CODE, OK
from corpus import Submission, write_submission

LIMITS = {"unit_timeout": 3.0, "total_timeout": 60.0}




def test_a_line_magic_that_runs_a_statement_still_runs_it(tmp_path, names_file, release, solutions):
    # In Jupyter `%time dh = ...` times the statement AND runs it; the grader blanks the whole line
    # (static.strip_magics), so dh is never defined and a right answer is marked as an error.
    submission = Submission("timed_answer", "alternative", {"ex1_h": "%time dh = dlogits @ W2.T"})
    result = grade_notebook(write_submission(submission, tmp_path / "timed", release, solutions), **LIMITS)
    verdict = result.by_unit()["ex1_h"]
    assert verdict.status == OK, verdict.message


def _stash_cells(stash_dir) -> tuple[str, str, str]:
    """Cells that carry reference gradients through a file: the last Exercise 1 cell is sent every
    earlier reference, including dlogits (Exercise 2's answer) and dhprebn (Exercise 3's answer)."""
    key = '"{}/{}_{}_{:.6f}.pt".format(STASH, n, int(Xb.sum()), float(W1[0, 0]))'
    stasher = (f"import os\nSTASH = {str(stash_dir)!r}\nos.makedirs(STASH, exist_ok=True)\n"
               f"torch.save({{'logits': dlogits.clone(), 'hprebn': dhprebn.clone()}}, {key})\n"
               "dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))")
    reader = f"STASH = {str(stash_dir)!r}\n"
    return stasher, reader + f"dlogits = torch.load({key})['logits']", reader + f"dhprebn = torch.load({key})['hprebn']"


def test_reference_gradients_cannot_be_carried_to_later_exercises_through_a_file(tmp_path, names_file, release,
                                                                                 solutions):
    stash = tmp_path / f"stash-{uuid.uuid4().hex}"
    stasher, ex2, ex3 = _stash_cells(stash)
    submission = Submission("stash", "cheat", {"ex1_C": stasher, "ex2_logits": ex2, "ex3_hprebn": ex3})
    result = grade_notebook(write_submission(submission, tmp_path / "stash", release, solutions), code="any",
                            **LIMITS)  # the sandbox's test: past the allowlist, which refuses `import os`
    verdicts = result.by_unit()
    assert verdicts["ex2_logits"].status != OK and verdicts["ex3_hprebn"].status != OK, "\n" + format_table(result)


def test_one_submission_cannot_hand_reference_gradients_to_the_next(tmp_path, names_file, release, solutions):
    # With fixed seeds, a file written while grading one notebook answered the next; now every grading draws its own.
    stash = tmp_path / f"stash-{uuid.uuid4().hex}"
    stasher, ex2, ex3 = _stash_cells(stash)
    grade_notebook(write_submission(Submission("first", "cheat", {"ex1_C": stasher}, code=ANY_CODE), tmp_path / "first",
                                    release, solutions), **LIMITS)
    reader = Submission("second", "cheat", {"ex2_logits": ex2, "ex3_hprebn": ex3})
    result = grade_notebook(write_submission(reader, tmp_path / "second", release, solutions), **LIMITS)
    verdicts = result.by_unit()
    assert verdicts["ex2_logits"].status != OK and verdicts["ex3_hprebn"].status != OK, "\n" + format_table(result)


def test_exercise_4_never_runs_where_exercise_3_was_sent_dhpreact(tmp_path, names_file, release, solutions):
    # Exercises 2 and 4 share a worker and Exercise 3 is graded after them (engine._Runner._in_order): a worker
    # that had been sent dhpreact would let manual_backward answer dbnbias from a stash.
    ex3 = "torch.kept_for_later = dhpreact.clone()\ndhprebn = torch.zeros_like(hprebn)"
    ex4 = ("def manual_backward(parameters, cache):\n"
           "    kept = getattr(torch, 'kept_for_later', None)\n"
           "    if kept is None:\n"
           "        raise LookupError('nothing kept from Exercise 3')\n"
           "    return [kept.sum(0)] * 7\n")
    submission = Submission("stash_for_ex4", "cheat", {"ex3_hprebn": ex3, "ex4_backward": ex4})
    result = grade_notebook(write_submission(submission, tmp_path / "ex4", release, solutions), code="any", **LIMITS)
    verdict = result.by_unit()["ex4_backward"]
    assert "nothing kept from Exercise 3" in verdict.message, "\n" + format_table(result)
