"""The grader a batch worker runs by default (run.DEFAULT_GRADER): `warm_up()` once, then `grade(path, limits)`.

A grader module is anything with these two functions (tests use a stand-in); PRELOAD names the modules the
forkserver imports once, so that every worker forks with them loaded. This module must not import torch at
its top: the batch's main process imports it to read PRELOAD.
"""
from __future__ import annotations

# Imported once by the forkserver, so every worker forks with torch and the engine already loaded.
PRELOAD = ("backprop_ninja.grade.engine", "backprop_ninja.export.gradescope")


def warm_up() -> list[tuple[str, float]]:
    """Import the engine (and torch), load the data once; return the units as (grade_id, max points)."""
    from backprop_ninja.grade import engine
    from backprop_ninja.units import UNITS

    for seed, n in engine.REPLAYS:  # cached by the engine: built once per worker, not per submission
        engine.replay_inputs(seed, n)
    return [(u.grade_id, float(u.points)) for u in UNITS]


def grade(path: str, limits: dict) -> tuple[dict, dict]:
    """Grade one notebook with the engine: (SubmissionResult as a dict, Gradescope results.json)."""
    from dataclasses import asdict

    from backprop_ninja.export.gradescope import to_gradescope
    from backprop_ninja.grade.engine import grade_notebook

    result = grade_notebook(path, **limits)
    return asdict(result), to_gradescope(result)
