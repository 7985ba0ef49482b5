"""The notebook's `diagnoses` cell: diagnose.py as it is, plus the units table's diagnostic rows as a literal, plus
model.py (the forward pass) as the body of a function whose locals become the namespace `_model`.

`backprop-ninja assign` writes it into the cell whose grade_id is `diagnoses`, so the notebook's `check` names a
mistake with the grader's own code and data (one source, no copy by hand). It needs only numpy, which matplotlib
brings wherever the notebook runs.
"""
from __future__ import annotations

import ast
import pprint
from pathlib import Path

from backprop_ninja import diagnose, model, units
from backprop_ninja.grade import autograd_scan, cell_text, compare, one_go, probe
from backprop_ninja.inline import as_namespace, module_body

CELL = "diagnoses"  # the grade_id of the cell

_HEADER = """\
# Written by `backprop-ninja assign` from the kit's backprop_ninja/diagnose.py and its units table: the code the
# grader uses to name a likely mistake, so that check() names it the same way. No answers in here; reading it is
# optional.
"""


_MODEL_INTRO = """\
# The grader's own forward pass and autograd reference (backprop_ninja/model.py, as it is, inside the function
# below): check() re-runs your answer cell on fresh batches with it. Its names (forward, init_parameters, ...) live
# in `_model` only, so they never mix with the notebook's.
"""


def model_code() -> str:
    """model.py's code, as code (not a string), as the body of a function whose locals become `_model`: one forward
    pass for the kit and the notebook, whose names stay out of the notebook's."""
    return as_namespace("_model", _MODEL_INTRO, module_body(model))


_PROBE_INTRO = """\
# The grader's rule probe (backprop_ninja/grade/probe.py, its numpy part, as it is): whether an answer that matches
# with random gradients in place of the ones it builds on is a wrong combination of its branches, right only by luck.
"""


def _functions(module, names) -> list[str]:
    """The source, as it is, of a module's top-level functions named `names`."""
    source = Path(module.__file__).read_text(encoding="utf-8")
    found = {node.name: ast.get_source_segment(source, node, padded=True) for node in ast.parse(source).body
             if isinstance(node, ast.FunctionDef)}
    return [found[name] for name in names]


def probe_code() -> str:
    """probe.py's functions that need only numpy (probe.NOTEBOOK_CODE), as code, in the namespace `_probe`, with its
    seed and the table's ZERO_BECAUSE as literals; then how the grader judges its float64 stress replay (compare.py's
    ATOL_FLOAT64, _float32_numbers and its words for that replay)."""
    parts = ["import itertools", f"PROBE_SEED = {probe.PROBE_SEED!r}", f"ZERO_BECAUSE = {pprint.pformat(probe.ZERO_BECAUSE, width=110)}",
             *_functions(probe, probe.NOTEBOOK_CODE)]
    return (as_namespace("_probe", _PROBE_INTRO, "\n\n".join(parts)) + "\n"
            "# The grader's tolerance on its float64 stress replay, times the scale (backprop_ninja/grade/compare.py)\n"
            f"ATOL_FLOAT64 = {compare.ATOL_FLOAT64!r}\nSTRESS_WORDS = {compare.SPECIAL_WORDS[model.STRESS64]!r}\n"
            "# Off, but nowhere by more than this many tolerances: the grader's near-miss (compare.py)\n"
            f"NEAR_MISS = {compare.NEAR_MISS!r}\n\n\n"
            + "\n\n".join(_functions(compare, ["_float32_numbers"])))


_CELL_RULES_INTRO = """\
# How the grader reads a cell (backprop_ninja/grade/cell_text.py) and the rule of Exercises 2 and 3
# (backprop_ninja/grade/one_go.py), as they are, in the namespace `_one_go`; then what each of the two may read.
"""


def cell_rules_code() -> str:
    """cell_text.py and one_go.py, as code, in the namespace `_one_go`, and units.one_go_rules() as a literal: the
    notebook reads a cell and applies the one-go rule with the grader's own code."""
    rules = pprint.pformat(units.one_go_rules(), width=112, compact=True)
    return (as_namespace("_one_go", _CELL_RULES_INTRO, module_body(cell_text) + "\n\n" + module_body(one_go))
            + "ONE_GO_RULES = " + rules + "\n")


_SCAN_INTRO = """\
# The grader's static scan (backprop_ninja/grade/autograd_scan.py, as it is), in the namespace `_scan`, with what
# each answer cell may not use (from backprop_ninja/units.py) as literals: check() names a cell that asks autograd
# with the grader's construct, line and words.
"""


def scan_code() -> str:
    """autograd_scan.py, as code, in the namespace `_scan`, and per answer cell (grade_id) its `Rules` built from
    literals of the units table: the notebook scans a cell for autograd with the grader's own code."""
    cells = "".join(f"    {u.grade_id!r}: ({u.answer!r}, {tuple(u.forbidden)!r}),\n" for u in units.UNITS)
    data = (f"AUTOGRAD_ATTRIBUTES = {tuple(units.AUTOGRAD_ATTRIBUTES)!r}\n"
            f"AUTOGRAD_MODULES = {tuple(units.AUTOGRAD_MODULES)!r}\n"
            f"# grade_id -> (the name its cell defines, the functions that would do its work)\n"
            f"CELLS = {{\n{cells}}}\n"
            f"RULES = {{grade_id: Rules(answer, forbidden, AUTOGRAD_ATTRIBUTES, AUTOGRAD_MODULES)\n"
            f"         for grade_id, (answer, forbidden) in CELLS.items()}}")
    return as_namespace("_scan", _SCAN_INTRO, module_body(autograd_scan) + "\n\n" + data)


def _exercise_consumers() -> dict[str, list[str]]:
    return {f"ex{u.exercise}": list(u.consumers) for u in units.UNITS if u.exercise in (2, 3)}


def notebook_code() -> str:
    table = pprint.pformat(units.diagnostic_table(), width=116, sort_dicts=False)
    return (_HEADER + "\n" + module_body(diagnose) + "\n\n# Per variable: the lines that use it, the paths of a one-go "
            "exercise, and what its messages may mention.\n_DIAGNOSTICS = " + table + "\n"
            + "# Per one-go exercise: the gradients its answer starts from (the grader's scale of the tolerance)\n"
            + f"_EXERCISE_CONSUMERS = {_exercise_consumers()!r}\n" + model_code()
            + probe_code() + "\n\n" + cell_rules_code() + "\n" + scan_code())
