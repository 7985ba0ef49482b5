"""The grader: one verdict per unit for a submitted notebook (see docs/grader.md).

`grade_notebook` is imported on first use, so reading verdicts (grade.verdict) does not pay for torch.
"""
__all__ = ["grade_notebook"]


def __getattr__(name: str):
    if name == "grade_notebook":
        from backprop_ninja.grade.engine import grade_notebook

        return grade_notebook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
