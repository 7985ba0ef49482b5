"""engine.SharedDraw: a batch worker's draw of replay seeds, reused for a few gradings, only when isolated."""
from __future__ import annotations

from pathlib import Path

import pytest

from backprop_ninja.grade import engine, isolation

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "submitted"
LIMITS = {"unit_timeout": 10.0, "total_timeout": 120.0}


def _points(result) -> dict[str, float]:
    return {v.unit: v.points for v in result.verdicts}


def test_a_draw_serves_at_least_one_grading():
    with pytest.raises(ValueError, match="at least one grading"):
        engine.SharedDraw(0)


def test_a_draw_changes_after_its_uses(names_file, monkeypatch):
    draws = iter([11, 22])
    monkeypatch.setattr(engine, "draw_seed_base", lambda: next(draws))
    shared = engine.SharedDraw(2)
    first, second, third = shared.next_plans(), shared.next_plans(), shared.next_plans()
    assert first == second == engine.replay_plans(11)
    assert third == engine.replay_plans(22)


def test_unisolated_gradings_draw_their_own_seeds(names_file):
    shared = engine.SharedDraw(5)
    with isolation.UnisolatedLauncher("tests") as launcher:
        engine.grade_notebook(EXAMPLES / "ada" / "backprop_ninja" / "backprop_ninja.ipynb", launcher=launcher,
                              shared=shared, **LIMITS)
    assert shared.left == 0 and not shared.replays  # never asked: a cell there could keep a file for the next


def test_isolated_gradings_share_a_draw_and_give_the_same_points(names_file):
    if isolation.unavailable_reason() is not None:
        pytest.fail(f"bubblewrap is needed here: {isolation.unavailable_reason()}")
    notebooks = [EXAMPLES / name / "backprop_ninja" / "backprop_ninja.ipynb" for name in ("ada", "ben")]
    shared = engine.SharedDraw(3)
    with isolation.start(isolation.REQUIRED) as launcher:
        alone = [engine.grade_notebook(path, launcher=launcher, **LIMITS) for path in notebooks]
        together = [engine.grade_notebook(path, launcher=launcher, shared=shared, **LIMITS) for path in notebooks]
        replays = dict(shared.replays)
        assert shared.left == 1 and len(replays) == 10  # both gradings used the same ten replays
        assert all(replay.grads for replay in replays.values())
        engine.grade_notebook(notebooks[0], launcher=launcher, shared=shared, **LIMITS)
        engine.grade_notebook(notebooks[0], launcher=launcher, shared=shared, **LIMITS)  # a new draw
        assert shared.left == 2 and all(shared.replays[spec] is not replays.get(spec) for spec in shared.replays)
    assert [_points(r) for r in together] == [_points(r) for r in alone]
    assert [[v.status for v in r.verdicts] for r in together] == [[v.status for v in r.verdicts] for r in alone]


def test_two_threads_make_each_replay_of_a_draw_once(names_file, monkeypatch):
    import threading

    made = []
    real = engine.replay_inputs

    def counting(*spec):
        made.append(spec)
        return real(*spec)

    monkeypatch.setattr(engine, "replay_inputs", counting)
    shared = engine.SharedDraw(2)
    plan = shared.next_plans()[0]
    shared.next_plans()
    results = []
    threads = [threading.Thread(target=lambda: results.append(shared.replays_for(plan))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(made) == sorted(plan)  # every replay once, none twice
    assert [[r.seed for r in replays] for replays in results] == [[spec[0] for spec in plan]] * 2


def test_a_cold_grading_and_its_canary_replay_one_draw(names_file, monkeypatch):
    if isolation.unavailable_reason() is not None:
        pytest.fail(f"bubblewrap is needed here: {isolation.unavailable_reason()}")
    made = []
    real = engine.replay_inputs
    monkeypatch.setattr(engine, "replay_inputs", lambda *spec: made.append(spec) or real(*spec))
    with isolation.start(isolation.REQUIRED) as launcher:
        result = engine.grade_notebook(EXAMPLES / "ada" / "backprop_ninja" / "backprop_ninja.ipynb",
                                       launcher=launcher, **LIMITS)
        assert launcher.environment_checked  # the canary ran, and passed
    assert len(made) == len(set(made)) == 10  # ten replays for both gradings, not twenty
    assert result.score == result.max_score == 32
