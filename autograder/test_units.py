"""One test per graded unit (backprop_ninja.units.UNITS); a test fails with its verdict's message."""
from __future__ import annotations

import pytest

from backprop_ninja.units import UNITS, Unit


@pytest.mark.parametrize("unit", UNITS, ids=[u.grade_id for u in UNITS])
def test_unit(graded, unit: Unit) -> None:
    verdict = graded.by_unit()[unit.grade_id]
    if not verdict.passed:
        pytest.fail(f"{unit.grade_id} ({verdict.status}, 0/{verdict.max_points:g}): {verdict.message}",
                    pytrace=False)
