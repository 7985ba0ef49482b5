"""The notebook's tutor, generated from the table of units when the notebooks are built.

`notebook_code()` returns the source of one standalone code cell for the student's notebook: the data below as
the literal `_TUTOR`, then the code of `backprop_ninja.notebook_tutor` as it is (hint(), show_graph() and
draw_progress(); it needs only matplotlib and the standard library, so it runs on Colab without this kit). This
module computes the data: the layered graph cut in two halves drawn side by side (`graph()`), so that it fits a
laptop screen, and the units with their hints (`tutor_data()`).

Everything the cell knows comes from `backprop_ninja.units` (the variables, their forward lines, their consumers,
the `hints` and `broadcast` texts) and is written into the cell as one literal. No answer line is ever written into
it: the third hint reads the answer from the solutions notebook when one can be found. With `with_hints=False` (a
release without hints) the hint texts are left out of the cell altogether and `hint()` only says so.
"""
from __future__ import annotations

import json
from collections import deque

from backprop_ninja import notebook_tutor
from backprop_ninja.inline import module_body
from backprop_ninja.units import EX4_RETURNS, EXERCISE_1, RULES, UNITS, Unit

LOSS_LINE = "loss = -logprobs[range(n), Yb].mean()"
DATA_INPUTS = {"Xb": "emb"}  # data the forward pass reads but nobody differentiates: name -> its consumer


def _hints(unit: Unit) -> dict[str, str]:
    return dict(getattr(unit, "hints", None) or {})


def _broadcast(unit: Unit) -> dict[str, str]:
    return {k: v for k, v in (getattr(unit, "broadcast", None) or {}).items() if v}


def _forward_lines() -> dict[str, str]:
    """Variable -> the forward line that made it (intermediates and the loss; parameters have none)."""
    lines = {u.var: u.forward for u in EXERCISE_1 if u.forward != "parameter"}
    lines["loss"] = LOSS_LINE
    return lines


def _forward_order() -> list[str]:
    """The computed variables in the order the forward pass makes them, ending with the loss."""
    return [u.var for u in reversed(EXERCISE_1) if u.forward != "parameter"] + ["loss"]


def _edges() -> list[tuple[str, str]]:
    edges = [(name, consumer) for name, consumer in DATA_INPUTS.items()]
    for unit in reversed(EXERCISE_1):
        edges += [(unit.var, consumer) for consumer in unit.consumers]
    return edges


def _reachable(start: str, edges, forward: bool = True) -> set[str]:
    step = {}
    for a, b in edges:
        src, dst = (a, b) if forward else (b, a)
        step.setdefault(src, []).append(dst)
    seen, todo = set(), [start]
    while todo:
        for nxt in step.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# The picture's measures, in inches: a notebook shows a figure at 100 dpi, so 9 x 6 inches is 900 x 600 pixels.
FONT_POINTS = notebook_tutor._TUTOR_FONT_POINTS  # the picture draws names at this size
_CHAR_WIDTH = 0.602 * FONT_POINTS / 72  # one character of DejaVu Sans Mono, matplotlib's monospace font
_BOX_PAD = 0.35 * FONT_POINTS / 72  # the pad of a node's box on each side of its text
BOX_HALF_HEIGHT = (0.6 + 0.35) * FONT_POINTS / 72 + 0.02  # half a line of text, the pad and the box's edge
_COLUMN_GAP = 0.3
_GUTTER = 0.6  # between the two halves, where the arrows from the first half to the second run
_ROW_PITCH = 0.43
_MARGIN = 0.15
_TITLE_BAND = 0.4
_LEGEND_BAND = 0.35


def _split_row(nodes, edges) -> int:
    """The first row of the picture's second half: the fewest arrows from one half to the other, then the most
    even halves (the forward pass is too long to read as one column on a laptop screen)."""
    row = {node["var"]: node["row"] for node in nodes}
    last = max(row.values())

    def cost(split: int) -> tuple[int, int]:
        crossing = sum(1 for a, b in edges if row[a] < split <= row[b])
        return crossing, max(split, last + 1 - split)

    return min(range(1, last + 1), key=cost)


def _column_widths(nodes) -> dict[tuple[int, int], float]:
    """(half, col) -> the width of that column: its longest name in its box."""
    widths: dict[tuple[int, int], float] = {}
    for node in nodes:
        key = (node["half"], node["col"])
        widths[key] = max(widths.get(key, 0.0), len(node["var"]) * _CHAR_WIDTH + 2 * _BOX_PAD)
    return widths


def _column_centres(nodes) -> dict[tuple[int, int], float]:
    """(half, col) -> the x of that column's centre, the halves side by side from the left margin."""
    widths = _column_widths(nodes)
    centres, x = {}, _MARGIN
    for half in sorted({h for h, _ in widths}):
        for col in sorted(c for h, c in widths if h == half):
            centres[half, col] = x + widths[half, col] / 2
            x += widths[half, col] + _COLUMN_GAP
        x += _GUTTER - _COLUMN_GAP
    return centres


def _route(a: dict, b: dict, gutter_x: float, top: float) -> list[list[float]]:
    """The way of an arrow from the first half to the second: down out of `a`, right to the gutter, up above the
    second half, right and down into `b`, never through another node."""
    below = round(a["y"] - BOX_HALF_HEIGHT - 0.12, 3)
    return [[a["x"], round(a["y"] - BOX_HALF_HEIGHT, 3)], [a["x"], below], [gutter_x, below], [gutter_x, top],
            [b["x"], top], [b["x"], round(b["y"] + BOX_HALF_HEIGHT, 3)]]


def graph() -> dict:
    """Nodes (with kind, layered row and col, half, and x, y in inches), edges, routes and size of the forward pass.

    The layered column of `_grid` is cut in two halves drawn side by side, so that the whole pass fits a laptop
    screen (about 900 x 600 pixels) with every variable in view. An arrow from the first half to the second has a
    route (its corners, in inches); the others go straight from box to box.
    """
    edges = _edges()
    nodes = _grid(edges)
    split = _split_row(nodes, edges)
    rows = max(max(node["row"] for node in nodes) + 1 - split, split)
    for node in nodes:
        node["half"] = int(node["row"] >= split)
    centres = _column_centres(nodes)
    top = _LEGEND_BAND + rows * _ROW_PITCH  # the centre of a half's first row sits half a pitch below this
    for node in nodes:
        node["x"] = round(centres[node["half"], node["col"]], 3)
        node["y"] = round(top - (node["row"] - split * node["half"] + 0.5) * _ROW_PITCH, 3)
    by_var = {node["var"]: node for node in nodes}
    widths = _column_widths(nodes)
    gutter_x = max(centres[key] + widths[key] / 2 for key in centres if key[0] == 0) + _GUTTER / 2
    routes = {f"{a}->{b}": _route(by_var[a], by_var[b], round(gutter_x, 3), round(top + 0.08, 3))
              for a, b in edges if by_var[a]["half"] != by_var[b]["half"]}
    width = max(centres[key] + widths[key] / 2 for key in centres) + _MARGIN
    return {"nodes": nodes, "edges": [list(edge) for edge in edges], "routes": routes,
            "size": [round(width, 2), round(top + 0.1 + _TITLE_BAND, 2)]}


def _grid(edges) -> list[dict]:
    """The nodes of the forward pass with kind and a layered top-to-bottom position (row, col), as one tall column.

    Rows follow the forward pass: a computed variable sits one row below the deepest computed variable it reads; a
    parameter or data input sits one row above its first consumer. The shortest path from the embedding to the loss
    is the spine (column 0); the side branches that rejoin it (the batch mean, the variance, the max, the row sum)
    take column 1, parameters columns -1, -2, ..., data inputs the right-hand side.
    """
    order = _forward_order()
    params = [u.var for u in reversed(EXERCISE_1) if u.forward == "parameter"]
    preds: dict[str, list[str]] = {}
    for a, b in edges:
        preds.setdefault(b, []).append(a)
    depth: dict[str, int] = {}
    for var in order:
        computed = [p for p in preds.get(var, []) if p in depth]
        depth[var] = 1 + max((depth[p] for p in computed), default=0)
    for var in params + list(DATA_INPUTS):
        depth[var] = min(depth[b] for a, b in edges if a == var) - 1
    # the spine: breadth-first shortest path from the first computed variable to the loss, in forward order
    start, back = order[0], {order[0]: None}
    queue = deque([start])
    while queue:
        var = queue.popleft()
        for a, b in edges:
            if a == var and b not in back:
                back[b] = var
                queue.append(b)
    spine, var = [], "loss"
    while var is not None:
        spine.append(var)
        var = back[var]
    used: set[tuple[int, int]] = set()

    def place(row: int, columns) -> int:
        for col in columns:
            if (row, col) not in used:
                used.add((row, col))
                return col
        raise AssertionError("unreachable")

    nodes = []
    for var in order:
        col = place(depth[var], [0] if var in spine else range(1, 10))
        nodes.append({"var": var, "kind": "loss" if var == "loss" else "computed", "row": depth[var], "col": col})
    for var in params:
        nodes.append({"var": var, "kind": "parameter", "row": depth[var], "col": place(depth[var], range(-1, -10, -1))})
    for var in DATA_INPUTS:
        nodes.append({"var": var, "kind": "data", "row": depth[var], "col": place(depth[var], range(1, 10))})
    nodes.sort(key=lambda node: (node["row"], node["col"]))
    return nodes


def _block(unit: Unit, edges) -> list[str]:
    """For Exercises 2 and 3: the Exercise 1 lines between the variable and the consumer that they fuse."""
    (target,) = unit.consumers
    inside = _reachable(unit.var, edges) & (_reachable(target, edges, forward=False) | {target})
    return [var for var in _forward_order() if var in inside]


def _aliases() -> dict[str, str]:
    """Every name a student may pass -> grade_id. Exercise 1 by variable (`counts` or `dcounts`), any unit by its
    grade_id (`ex1_counts`, `ex2_logits`), Exercises 2-4 by `ex2`, `ex3`, `ex4` (and `manual_backward`)."""
    aliases: dict[str, str] = {}
    for unit in UNITS:
        aliases[unit.grade_id] = unit.grade_id
        if unit.exercise == 1:
            aliases[unit.var] = aliases["d" + unit.var] = unit.grade_id
        else:
            aliases[f"ex{unit.exercise}"] = unit.grade_id
    aliases["manual_backward"] = "ex4_backward"
    lowered: dict[str, list[str]] = {}
    for key, gid in aliases.items():
        lowered.setdefault(key.lower(), []).append(gid)
    for key, gids in lowered.items():  # `w1` for `W1`, as long as the lower-case spelling is unambiguous
        if key not in aliases and len(set(gids)) == 1:
            aliases[key] = gids[0]
    return aliases


def tutor_data(*, with_hints: bool = True) -> dict:
    """The literal the notebook cell carries: units, aliases, the graph and the rules of the first rung. Without
    hints: no hint texts, no broadcast notes, rules or overviews (they are hints too)."""
    lines = _forward_lines()
    edges = _edges()
    units = {}
    for unit in UNITS:
        entry = {"var": unit.var, "grade_id": unit.grade_id, "exercise": unit.exercise, "answer": unit.answer,
                 "forward": unit.forward, "shape": getattr(unit, "shape", "") or "",
                 "consumers": [{"var": c, "forward": lines[c]} for c in unit.consumers]}
        if unit.exercise in (2, 3):
            block = _block(unit, edges)
            entry["block"] = [{"var": v, "forward": lines[v]} for v in block]
        if unit.exercise == 4:
            entry["returns"] = list(EX4_RETURNS)
        if with_hints:
            entry["hints"] = _hints(unit)
            entry["broadcast"] = _broadcast(unit)
            entry["rules"] = dict(getattr(unit, "rule_kinds", None) or {})
            entry["overview"] = getattr(unit, "overview", "") or ""
        units[unit.grade_id] = entry
    data = {"with_hints": with_hints, "ex1": [u.var for u in EXERCISE_1], "units": units, "aliases": _aliases(),
            "graph": graph()}
    if with_hints:  # the rules of the first rung are hints too
        data["rules"] = dict(RULES)
    return data


_HEADER = """\
# The tutor. hint("counts") gives a hint for dcounts; call it again for the next one (three in all).
# show_graph("counts") draws the forward pass with counts and the lines that use it highlighted.
# Generated from the kit's table of units (backprop_ninja/tutor.py) and backprop_ninja/notebook_tutor.py: do not
# edit this cell.
"""


def _literal(value, depth: int = 0) -> str:
    """The data as a Python literal: JSON (the data has no null, and its one flag, `with_hints`, is at the top level,
    written as Python's True or False), each string whole on one line (so a hint text can be found in the cell
    verbatim), the outer levels one entry per line, the inner ones compact."""
    if isinstance(value, bool):
        return repr(value)
    if depth >= 3 or not isinstance(value, (dict, list)) or not any(isinstance(v, (dict, list)) for v in
                                                                    (value.values() if isinstance(value, dict) else value)):
        return json.dumps(value, ensure_ascii=False)
    pad = " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(key)}: {_literal(item, depth + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad[:-1] + "}"
    return "[\n" + ",\n".join(pad + _literal(item, depth + 1) for item in value) + "\n" + pad[:-1] + "]"


def notebook_code(*, with_hints: bool = True) -> str:
    """The source of the notebook's tutor cell (see the module docstring): a header, the data as the literal
    `_TUTOR`, then notebook_tutor.py's code as it is. Deterministic: the same table gives the same text."""
    data = _literal(tutor_data(with_hints=with_hints))
    return f"{_HEADER}_TUTOR = {data}\n\n\n{module_body(notebook_tutor)}"
