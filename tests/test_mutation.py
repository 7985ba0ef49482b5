"""Mutation test of the grader: every typical slip on every line of the reference solution must cost
its unit, unless the slip leaves the answer numerically the same (then the grader must accept it).

Run with -s to watch; the score line is printed to the terminal either way and written, with the
list of mutants and the equivalent ones, to mutation_report.txt in pytest's base temp folder.
"""
from __future__ import annotations

import nbformat
import pytest

from backprop_ninja import units
from backprop_ninja.assign import REPO, notebook_path
from backprop_ninja.examples import filled
from backprop_ninja.export import format_table
from backprop_ninja.grade import engine, grade_notebook
from backprop_ninja.grade.verdict import OK
from mutation import TEXT_OPERATORS, Mutant, all_mutants, batches, equivalence

LIMITS = {"unit_timeout": 3.0, "total_timeout": 60.0}


@pytest.fixture(scope="module")
def mutants(solutions) -> list[Mutant]:
    return all_mutants(solutions)


@pytest.fixture(scope="module")
def equivalents(mutants, names_file) -> dict[Mutant, str]:
    replays = []
    for seed, n in engine.REPLAYS:
        replay = engine.replay_inputs(seed, n)
        engine.add_reference_gradients(replay)
        replays.append(replay)
    reasons = {m: equivalence(m, replays) for m in mutants}
    return {m: why for m, why in reasons.items() if why}


@pytest.fixture(scope="module")
def verdicts(mutants, solutions, tmp_path_factory, names_file) -> dict[Mutant, object]:
    """Each mutant's verdict, from notebooks that hold at most one mutant per unit."""
    release = nbformat.read(notebook_path(REPO, "release"), as_version=4)
    folder = tmp_path_factory.mktemp("mutants")
    found = {}
    for index, batch in enumerate(batches(mutants)):
        path = folder / f"batch{index:02d}.ipynb"
        nbformat.write(filled(release, {**solutions, **{gid: m.source for gid, m in batch.items()}}), path)
        result = grade_notebook(path, **LIMITS)
        by_unit = result.by_unit()
        untouched = [gid for gid in by_unit if gid not in batch and (by_unit[gid].status != OK or by_unit[gid].note)]
        assert not untouched, f"a unit without a mutant failed in {path.name}:\n{format_table(result)}"
        found.update({m: by_unit[gid] for gid, m in batch.items()})
    return found


def test_every_operator_finds_lines_to_mutate(mutants):
    used = {m.operator for m in mutants}
    assert {op for op, _, _ in TEXT_OPERATORS} | {"flip sign"} == used
    assert {m.grade_id for m in mutants} == {u.grade_id for u in units.UNITS}


def test_mutants_are_graded_one_per_unit_per_notebook(mutants):
    packed = batches(mutants)
    assert sorted((m.grade_id, m.line, m.after) for b in packed for m in b.values()) == \
        sorted((m.grade_id, m.line, m.after) for m in mutants)
    assert all(gid == m.grade_id for b in packed for gid, m in b.items())


def test_every_mutant_is_killed_unless_equivalent(mutants, equivalents, verdicts, tmp_path_factory, capsys,
                                                  record_property):
    killable = [m for m in mutants if m not in equivalents]
    killed = [m for m in killable if verdicts[m].status != OK]
    survivors = [m for m in killable if verdicts[m].status == OK]
    rejected_equivalents = [m for m in equivalents if verdicts[m].status != OK]
    score = f"mutation score: {len(killed)}/{len(killable)} killed ({100 * len(killed) / len(killable):.1f} %)"
    lines = [score, f"{len(mutants)} mutants, {len(equivalents)} numerically equivalent (left out of the score):"]
    lines += [f"  {m.describe()}\n      {why}; graded {verdicts[m].status}"
              + (f", right by luck: {verdicts[m].note}" if verdicts[m].note else "") for m, why in equivalents.items()]
    lines += ["survivors:"] + [f"  {m.describe()}" for m in survivors]
    lines += ["killed:"] + [f"  {m.describe()}\n      {verdicts[m].status}: {verdicts[m].message}" for m in killed]
    report = tmp_path_factory.getbasetemp() / "mutation_report.txt"
    report.write_text("\n".join(lines) + "\n")
    record_property("mutation_score", score)
    with capsys.disabled():
        print(f"\n{score}; equivalent: {len(equivalents)}; report: {report}")
    assert not survivors, "\n".join(lines)
    assert len(killed) == len(killable) > 0
    # a slip that changes nothing is a right answer: the grader must not take the points for it
    assert not rejected_equivalents, [m.describe() for m in rejected_equivalents]


def test_the_rule_probe_reports_the_sign_flips_of_zero_gradients(equivalents, verdicts):
    # Exercise 1's sign flips of a gradient that is exactly 0 (dlogit_maxes, its branch into dlogits, db1) are right
    # by luck: the rule probe says so in a note (their points are the policy's: kept by default).
    noted = {m for m in equivalents if verdicts[m].note}
    assert {m.grade_id for m in noted} == {"ex1_logit_maxes", "ex1_logits", "ex1_b1"} and len(noted) == 3
    for mutant in noted:
        assert "sign" in verdicts[mutant].note and "exactly 0 here" in verdicts[mutant].note, verdicts[mutant].note
    # The other equivalents are no slip the probe could see: a negated zeros_like is the very same tensor (the rule
    # is followed), and Exercise 4's manual_backward gets no upstream gradient to vary (its db1 is 0 on any input).
    for mutant in set(equivalents) - noted:
        assert "zeros_like" in mutant.before or mutant.grade_id == "ex4_backward", mutant.describe()


def test_the_equivalent_mutants_are_the_zero_gradients(equivalents):
    # db1 (a bias before batchnorm), dlogit_maxes and its branch into dlogits are zero up to
    # rounding, and negating torch.zeros_like changes nothing: only such slips may be equivalent.
    allowed = {"ex1_logprobs", "ex1_logit_maxes", "ex1_logits", "ex1_b1", "ex1_C", "ex4_backward"}
    assert {m.grade_id for m in equivalents} <= allowed
    assert {m.operator for m in equivalents} == {"flip sign"}
    for mutant in equivalents:
        assert "zeros_like" in mutant.before or "db1" in mutant.before or "maxes" in mutant.before, mutant.describe()
