"""The grader a batch worker runs by default (run.DEFAULT_GRADER): `warm_up(limits)` once, then `grade(path, limits)`.

`limits["isolation"]` is "required" (the default) or "off" (--no-isolation). warm_up starts this worker's
sandbox (one bwrap host, reused for every submission; each submission still gets fresh namespaces) and runs
the engine's canary under the batch's limits, so a machine that cannot grade stops the batch before any
student is graded.

A grader module is anything with these two functions (tests use a stand-in; grade may return the
(result, results.json) pair only, and the batch then renders the feedback page itself); PRELOAD names the modules the
forkserver imports once, so that every worker forks with them loaded. `is_machine_fault(error)`, if the module
has it, says which exceptions of grade() are the machine's fault: the batch then restarts the worker (a fresh
sandbox, the canary again) and grades the submission once more, instead of giving it a row that blames it. This module must not import torch at
its top: the batch's main process imports it to read PRELOAD.
"""
from __future__ import annotations

# Imported once by the forkserver, so every worker forks with torch and the engine already loaded.
PRELOAD = ("backprop_ninja.grade.engine", "backprop_ninja.export.gradescope", "backprop_ninja.export.feedback",
           "backprop_ninja.batch.quick_exit")


_launcher = None  # this worker's sandbox, from warm_up
_draw = None      # this worker's shared draw of replay seeds (engine.SharedDraw), from warm_up
GRADINGS_PER_DRAW = 32  # fresh secret seeds every 32 submissions of a worker (isolated only; see engine.SharedDraw)


def warm_up(limits: dict | None = None) -> list[tuple[str, float]]:
    """Start the sandbox, import the engine (and torch), load the data once, run the canary; return the units
    as (grade_id, max points). Raises (and the batch stops, saying why) if this machine cannot grade."""
    global _launcher, _draw
    import gc

    from backprop_ninja.grade import isolation

    limits = dict(limits or {})
    _launcher = isolation.start(limits.pop("isolation", isolation.REQUIRED))  # starts before torch loads here
    from backprop_ninja.grade import engine
    from backprop_ninja.units import UNITS

    for seed, n in engine.REPLAYS:  # cached by the engine: built once per worker, not per submission
        engine.replay_inputs(seed, n)
    _draw = engine.SharedDraw(GRADINGS_PER_DRAW)
    # The canary takes its replays from the first draw, as a cold grading's does: so it checks the very replays the
    # first students get, and the first grading need not make them again (their forward and backward passes).
    engine.ensure_environment(_launcher, engine.limits_for(**limits), *engine.timeouts(**limits), shared=_draw)
    if _launcher.isolated:  # unisolated boxes fork from here, and a frozen gc would change what cells see in it
        gc.freeze()  # torch's objects and the engine's tables stay: no full collection walks them again per submission
    return [(u.grade_id, float(u.points)) for u in UNITS]


def grade(path: str, limits: dict) -> tuple[dict, dict, dict]:
    """Grade one notebook with the engine: (SubmissionResult as a dict, Gradescope results.json, the pages to write
    beside it: {"feedback.html": text}). The page is made here, where the units table is loaded, so that the batch's
    main process never imports torch."""
    from backprop_ninja.export.feedback import FEEDBACK_NAME, to_html
    from backprop_ninja.export.gradescope import to_gradescope
    from backprop_ninja.grade.engine import grade_notebook

    limits = {name: value for name, value in limits.items() if name != "isolation"}
    result = grade_notebook(path, launcher=_launcher, shared=_draw, **limits)
    return result.to_dict(), to_gradescope(result), {FEEDBACK_NAME: to_html(result)}


def is_machine_fault(error: BaseException) -> bool:
    """Whether grade() failed because of the machine, never the notebook: a box or a worker that could not start,
    a sandbox host that died (engine.MachineFault, sandbox.BoxUnavailable), isolation that stopped working, or the
    reference answers failing here (engine.EnvironmentProblem)."""
    from backprop_ninja.grade import engine, isolation, sandbox

    return isinstance(error, (engine.EnvironmentProblem, sandbox.BoxUnavailable, isolation.IsolationUnavailable))
