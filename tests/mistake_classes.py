"""The mistake class a verdict's message names, read the same way from the notebook's check and from the grader.

Both word their diagnoses with backprop_ninja/diagnose.py (one class per Diagnosis.kind), so a phrase of each
message template tells the class; the classes before them are the verdicts that are no diagnosis (nothing answered,
autograd asked, a hard-coded batch, a near-miss, a cell that raised). The order matters: a near-miss message quotes
a diagnosis, a factor may come with a sign, and a branch's factor is a factor.
"""
from __future__ import annotations

import re

from backprop_ninja.diagnose import MISTAKES

# (class, pattern), first match wins; patterns are matched against the lower-cased message
PATTERNS: tuple[tuple[str, str], ...] = (
    ("missing", r"not defined yet|blank stub|no cell with grade_id|in place of `raise notimplementederror\(\)`"),
    ("autograd", r"autograd's own answer|asks autograd|uses autograd|\.grad\b|\.backward|torch\.autograd|torch\.func"
                 # the reasons the static scan (grade/autograd_scan.py) gives, which the notebook's check quotes
                 r"|does not count here|engine's internals|requires grad, so autograd|checks a gradient numerically"
                 r"|not to call a function that does"),
    ("stale", r"earlier forward pass"),
    ("hard_coded", r"literal 32|hard-coded|right on this batch but wrong on fresh"),
    ("near_miss", r"nearly right"),
    ("raised", r"\braised\b|does not parse|syntaxerror|could not be checked: \w*(error|exception)\b"),
    ("not_finite", r"contains (nan|inf)"),
    ("extra_dim", r"keepdim=true keeps a dimension"),
    ("keepdim", r"keep the summed dimension"),
    ("reshape", r"reshape it to the shape"),
    ("transposed", r"transposed"),
    ("missing_sum", r"missing a sum over axis|gradient of a broadcast variable is summed"),
    ("sum_axis", r"the sum should run over axis"),
    ("missing_broadcast", r"a sum in the forward pass is a broadcast in the backward pass"),
    ("zero", r"zero everywhere"),
    ("branch_factor", r"the other branch is right|the other paths are right"),
    ("missing_branch", r"only the branch through|the path through `\w+` is missing|part of the branch through"),
    ("factor", r"off by a factor"),
    ("sign", r"the sign is flipped"),
    ("constant_factor", r"off by a constant factor"),
    ("forward_value", r"uses the forward value"),
    ("other_gradient", r"equals the gradient of"),
    ("offset", r"every entry is"),
    ("plus_for_times", r"\+ written for \*"),
    ("forward_for_constant", r"a forward value seems to stand"),
    ("missing_accumulation", r"appear more than once"),
    ("argmax", r"where each row's logit is largest"),
    ("targets", r"positions of the correct characters"),
    ("location", r"wrong only in (row|column)|wrong in \d+ of \d+ (rows|columns)|all on the diagonal|\(row \d+, column"),
    ("differs", r"values differ at|does not match autograd yet"),
    ("shape", r"shape \(.*\) instead of|has shape"),
)
CLASSES = tuple(name for name, _ in PATTERNS)
if set(MISTAKES) - set(CLASSES):
    raise ValueError(f"tests/mistake_classes.py: no pattern for diagnose.MISTAKES {sorted(set(MISTAKES) - set(CLASSES))}")


def mistake_class(message: str | None) -> str:
    """The class a failing verdict's message names; "unclassified" (which no agreement can hide behind) if none."""
    text = (message or "").lower()
    for name, pattern in PATTERNS:
        if re.search(pattern, text):
            return name
    return "unclassified"


def grader_class(status: str, message: str) -> str:
    """The grader's class: its status where the status already says it (nothing answered, autograd, a refusal,
    a limit), else what its message names."""
    fixed = {"missing": "missing", "uses_autograd": "autograd", "not_allowed": "not_allowed", "timeout": "timeout",
             "crashed": "crashed"}
    if status in fixed:
        return fixed[status]
    found = mistake_class(message)
    if status == "error" and found not in ("hard_coded", "missing"):
        return "raised"  # an error is a cell that raised or did not parse, whatever the exception's words say
    return found
