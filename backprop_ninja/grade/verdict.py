"""What the grader says about one unit of one submission. A verdict is data, never an exception."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The statuses a unit can end in. Only "ok" earns points.
OK = "ok"                      # right on every replay
WRONG = "wrong"                # ran, but the numbers or the shape are off
ERROR = "error"                # the cell raised, or did not define the answer
MISSING = "missing"            # no cell with this grade_id, or it is still the blank stub
USES_AUTOGRAD = "uses_autograd"  # asked autograd (statically or at run time)
TIMEOUT = "timeout"            # ran past its time limit
CRASHED = "crashed"            # the process died under it (exit, signal, memory)
# Right on every replay, but the rule probe (grade/probe.py) showed it does not follow its local rule: it only
# matches because a gradient is exactly 0. Only under the strict rule policy; by default such a unit stays "ok",
# with the reason in `note`.
RIGHT_BY_LUCK = "right_by_luck"
# The cell uses something outside what a gradient needs (grade/allowlist.py): a module, attribute, builtin or
# language construct that is not on the list. Decided statically, before anything runs; never run.
NOT_ALLOWED = "not_allowed"
STATUSES = (OK, WRONG, ERROR, MISSING, USES_AUTOGRAD, TIMEOUT, CRASHED, RIGHT_BY_LUCK, NOT_ALLOWED)
# The rule policies (SubmissionResult.rules): what a right-by-luck answer earns.
LENIENT_RULES = "lenient"      # the default: full points, and a note says why the value matched
STRICT_RULES = "strict"        # --strict-rules: no points
# The shape policies (SubmissionResult.shape): what an answer right in value but not in shape earns.
STRICT_SHAPE = "strict"        # the default: the shape must be the variable's (keepdim matters when it is used)
LENIENT_SHAPE = "lenient"      # --shape lenient: size-1 dimensions may differ, for intermediates (not parameters)
SHAPE_POLICIES = (STRICT_SHAPE, LENIENT_SHAPE)
# The code policies (SubmissionResult.code): what an answer cell may contain.
ALLOWLIST_CODE = "allowlist"   # the default: only what a gradient needs (grade/allowlist.py); the rest is not_allowed
ANY_CODE = "any"               # --code any: any Python; only the autograd scan and the run-time blocks apply
CODE_POLICIES = (ALLOWLIST_CODE, ANY_CODE)


@dataclass
class Verdict:
    unit: str                  # grade_id, e.g. "ex1_logprobs"
    status: str
    points: float
    max_points: float
    message: str               # for the student: what is wrong, never the answer
    exact: bool | None = None  # bit-exact against the reference on the notebook's own inputs (information only)
    max_diff: float | None = None
    mismatch: list | None = None  # bool matrix (2-D, at most 64x64): where the answer is off; positions only
    note: str | None = None    # right by luck: why the value matched though the rule is not followed (grade/probe.py)
    shape_only: bool = False   # wrong only in shape: size-1 dimensions differ, the values are right on every replay

    @property
    def passed(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SubmissionResult:
    submission: str            # the file graded
    verdicts: list[Verdict] = field(default_factory=list)  # one per unit, in table order
    error: str | None = None   # set when the file could not be graded at all (then every unit is 0)
    execution_time: float = 0.0
    isolation: str = ""        # how student code ran (isolation.Launcher.description); "none (...)" if unisolated
    rules: str = ""            # the rule policy graded under: LENIENT_RULES or STRICT_RULES ("" in older records)
    shape: str = ""            # the shape policy graded under: STRICT_SHAPE or LENIENT_SHAPE ("" in older records)
    code: str = ""             # the code policy graded under: ALLOWLIST_CODE or ANY_CODE ("" in older records)

    @property
    def score(self) -> float:
        return sum(v.points for v in self.verdicts)

    @property
    def max_score(self) -> float:
        return sum(v.max_points for v in self.verdicts)

    def to_dict(self) -> dict:
        """What dataclasses.asdict gives, without its deep copy of every mismatch map (a sixth of a batch worker's own
        time): the lists are the verdicts' own, so the record is for writing out, not for changing."""
        record = {name: getattr(self, name) for name in self.__dataclass_fields__}
        record["verdicts"] = [{name: getattr(v, name) for name in Verdict.__dataclass_fields__} for v in self.verdicts]
        return record

    @classmethod
    def from_dict(cls, data: dict) -> SubmissionResult:
        """The inverse of to_dict (and of dataclasses.asdict), tolerant of fields a record may lack (e.g. a batch's fault rows)."""
        fields = Verdict.__dataclass_fields__
        verdicts = [Verdict(**{k: v for k, v in item.items() if k in fields}) for item in data.get("verdicts", [])]
        return cls(data.get("submission", ""), verdicts, data.get("error"), data.get("execution_time", 0.0),
                   data.get("isolation", ""), data.get("rules", ""), data.get("shape", ""),
                   data.get("code", ""))

    def by_unit(self) -> dict[str, Verdict]:
        return {v.unit: v for v in self.verdicts}
