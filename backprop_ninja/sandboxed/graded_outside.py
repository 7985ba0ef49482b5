"""The hidden-test hook of a kernel whose points come from outside it: display only.

Under `nbgrader autograde` with our config the hidden test cells still run
`from backprop_ninja.hidden import grade_unit; assert grade_unit("<unit>")`, but nothing the kernel does decides
points: the grader graded the submission before the kernel started, and nbgrader_plugins.ApplyEngineVerdicts
replaces every test cell's outputs with that verdict afterwards. In the sandboxed kernel (sandboxed/kernel.py) the
kit's package is absent and this module answers that import; in an unsandboxed kernel backprop_ninja/hidden.py
forwards here.

It returns False, so the hidden assert fails: if the step that writes the verdicts were ever left out of the
autograde chain, every unit would score 0 (visibly wrong), never full marks for nothing.
"""
from __future__ import annotations

MESSAGE = "graded outside this kernel; nbgrader writes the grader's verdict into this cell"


def grade_unit(unit: str) -> bool:
    print(f"{unit}: {MESSAGE}")
    return False
