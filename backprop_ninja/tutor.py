"""The notebook's tutor, generated from the table of units when the notebooks are built.

`notebook_code()` returns the source of one standalone code cell for the student's notebook. The cell needs only
torch, matplotlib and the standard library (it runs on Colab without this kit) and defines:

* `hint(name, path=None)`: a ladder of three hints per gradient (where the variable is used and the rule that
  applies; the local derivative of each line that uses it; the answer line, read from the solutions notebook);
* `show_graph(name=None)`: the forward pass drawn as a graph, with `name` and the lines that use it highlighted;
  the layered graph is cut in two halves drawn side by side (`graph()`), so that it fits a laptop screen;
* `draw_progress(statuses)`: the same graph coloured by the status of each gradient ("done", "wrong", "todo").

Everything the cell knows comes from `backprop_ninja.units` (the variables, their forward lines, their consumers,
the `hints` and `broadcast` texts) and is written into the cell as one literal. No answer line is ever written into
it: the third hint reads the answer from the solutions notebook when one can be found. With `with_hints=False` (a
release without hints) the hint texts are left out of the cell altogether and `hint()` only says so.
"""
from __future__ import annotations

import json
from collections import deque

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
FONT_POINTS = 9
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
    data = {"ex1": [u.var for u in EXERCISE_1], "units": units, "aliases": _aliases(), "graph": graph()}
    if with_hints:  # the rules of the first rung are hints too
        data["rules"] = dict(RULES)
    return data


_HEADER = '''\
# The tutor. hint("counts") gives a hint for dcounts; call it again for the next one (three in all).
# show_graph("counts") draws the forward pass with counts and the lines that use it highlighted.
# Generated from the kit's table of units (backprop_ninja/tutor.py): do not edit this cell.
_TUTOR = {data}


def _tutor_resolve(name):
    """The grade_id a name stands for, or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().strip("`'\\"").replace(" ", "")
    aliases = _TUTOR["aliases"]
    if key in aliases:
        return aliases[key]
    key = key.lower().replace("exercise", "ex")
    return aliases.get(key)


def _tutor_unknown(name, function):
    import difflib
    known = list(_TUTOR["aliases"])
    guess = difflib.get_close_matches(str(name), known, n=1)
    print(f"{{function}}({{name!r}}): I do not know that name." + (f" Did you mean {{guess[0]!r}}?" if guess else ""))
    print("Ask by the variable whose gradient you are writing, with or without the d: "
          f"{{function}}(\\"counts\\") or {{function}}(\\"dcounts\\").")
    print("Exercise 1:", ", ".join(_TUTOR["ex1"]))
    print(f"Exercises 2, 3 and 4: {{function}}(\\"ex2\\"), {{function}}(\\"ex3\\"), {{function}}(\\"ex4\\").")
'''

_HINTS_OFF = '''

def hint(name=None, path=None):
    """Hints are turned off for this course."""
    print("Hints are turned off for this course. show_graph(name) still draws where a variable is used.")
'''

_HINTS_ON = '''

_tutor_calls = {{}}


def hint(name=None, path=None):
    """Hints for one gradient, one step per call: where the variable is used and which rule applies; then the local
    derivative of each line that uses it; then the answer line from the course's solutions notebook.

    name: an Exercise 1 variable with or without its d ("counts", "dcounts", "W1"), "ex2", "ex3", "ex4"
    (Exercises 2 to 4), or any grade_id ("ex1_counts", "ex2_logits"). Each name counts its own calls.
    path: where the solutions notebook is, if BACKPROP_NINJA_SOLUTIONS is not set and it is not in the course
    folder (solutions/backprop_ninja/backprop_ninja.ipynb above this notebook's folder).
    Prints the hint and returns None.
    """
    try:
        gid = _tutor_resolve(name)
        if gid is None:
            _tutor_unknown(name, "hint")
            return None
        level = _tutor_calls[gid] = _tutor_calls.get(gid, 0) + 1
        unit = _TUTOR["units"][gid]
        if level == 1:
            _tutor_where(unit)
        elif level == 2:
            _tutor_local(unit)
        else:
            _tutor_answer(unit, path)
        if level < 3:
            again = _tutor_level_2_name(unit) if level == 1 else "the answer line"
            print(f"\\nWhen you are ready: hint({{name!r}}) again shows {{again}}.")
    except Exception as err:  # a hint must never stop the notebook
        print(f"The tutor hit a problem ({{type(err).__name__}}: {{err}}). Your work is unaffected.")
    return None


def _tutor_level_2_name(unit):
    """Exercises 2 and 3 get the steps of a derivation on paper, Exercise 4 a plan; Exercise 1 one local derivative
    per line that uses the variable."""
    return {{2: "the steps of the derivation", 3: "the steps of the derivation",
             4: "the plan of the function"}}.get(unit["exercise"], "the local derivatives")


def _tutor_title(unit):
    if unit["exercise"] == 1:
        return "d" + unit["var"]
    if unit["exercise"] == 4:
        return "Exercise 4 (manual_backward)"
    return f"Exercise {{unit['exercise']}} (d{{unit['var']}} in one expression)"


def _tutor_print(text, indent="    "):
    import textwrap
    for paragraph in str(text).splitlines() or [""]:
        print(textwrap.fill(paragraph, width=110, initial_indent=indent, subsequent_indent=indent,
                            break_long_words=False, break_on_hyphens=False) if paragraph.strip() else "")


def _tutor_shape(unit):
    return f", {{unit['shape']}}" if unit.get("shape") else ""


def _tutor_rule(kind, unit, consumer=None, **more):
    """One rule of the table, filled in for this variable (and one line that uses it)."""
    fields = dict(var=unit["var"], shape=unit.get("shape", ""), **more)
    if consumer is not None:
        fields.update(consumer=consumer["var"], line=consumer["forward"])
    _tutor_print(_TUTOR["rules"][kind].format(**fields), indent="")


def _tutor_where(unit):
    var, consumers = unit["var"], unit["consumers"]
    print(f"Hint 1 of 3 for {{_tutor_title(unit)}}: where does it go, and which rule applies?")
    if unit["exercise"] == 4:
        _tutor_print(unit.get("overview", ""), indent="")
        print("It returns [" + ", ".join(unit["returns"]) + "].")
        return
    if unit["exercise"] in (2, 3):
        print(f"These lines of the forward pass, from {{var}} to {{consumers[0]['var']}}, become one step:")
        for line in unit["block"]:
            print("    " + line["forward"])
        _tutor_print(unit.get("overview", ""), indent="")
        print(f"d{{var}} has the shape of {{var}}{{_tutor_shape(unit)}}.")
        return
    if unit["forward"] == "parameter":
        print(f"{{var}} is a parameter: no line computes it. These lines use it:")
    else:
        print(f"`{{unit['forward']}}` made {{var}}. These lines use it:")
    for consumer in consumers:
        print("    " + consumer["forward"])
    if len(consumers) > 1:
        _tutor_rule("used_twice", unit, count=len(consumers))
    elif unit["rules"].get(consumers[0]["var"]) != "loss":
        _tutor_rule("used_once", unit)
    for consumer in consumers:
        _tutor_rule(unit["rules"].get(consumer["var"], "entrywise"), unit, consumer)
        dims = unit.get("broadcast", {{}}).get(consumer["var"])
        if dims:
            _tutor_rule("broadcast", unit, consumer, dims=dims)
    print(f"d{{var}} has exactly the shape of {{var}}{{_tutor_shape(unit)}}.")


def _tutor_local(unit):
    var, hints = unit["var"], unit.get("hints", {{}})
    print(f"Hint 2 of 3 for {{_tutor_title(unit)}}: {{_tutor_level_2_name(unit)}}.")
    shown = set()
    for consumer in unit["consumers"]:
        shown.add(consumer["var"])
        print(f"  {{consumer['forward']}}")
        text = hints.get(consumer["var"])
        if text:
            _tutor_print(text)
        else:
            _tutor_print(f"Ask: when one entry of {{var}} changes a little, how does {{consumer['var']}} change? "
                         f"That rate, chained with the gradient that comes back to {{consumer['var']}}, is this "
                         "line's contribution.")
    for key, text in hints.items():  # a general hint (Exercise 4), not tied to one line
        if key not in shown and text:
            _tutor_print(text, indent="  ")
    if unit["exercise"] == 4 and not any(hints.values()):
        print("  Each part has its own hints: hint(\\"ex2\\"), hint(\\"ex3\\") and hint(\\"<variable>\\") for the rest.")
    if unit["exercise"] == 1 and len(unit["consumers"]) > 1:
        print(f"Then add the contributions: one line each, d{{var}} = ... and d{{var}} += ... .")


def _tutor_candidates(path):
    """(where it came from, Path) for every place the solutions notebook may be, in order."""
    import os
    from pathlib import Path
    rel = Path("solutions") / "backprop_ninja" / "backprop_ninja.ipynb"
    found = []
    if os.environ.get("BACKPROP_NINJA_SOLUTIONS"):
        found.append(("BACKPROP_NINJA_SOLUTIONS", Path(os.environ["BACKPROP_NINJA_SOLUTIONS"]).expanduser()))
    if path:
        found.append(("path=", Path(str(path)).expanduser()))
    here = Path.cwd()
    found.append(("the course folder", here / ".." / ".." / rel))
    found += [("the course folder", folder / rel) for folder in (here, *here.parents)]
    out, seen = [], set()
    for origin, candidate in found:
        if candidate.is_dir():
            inner = [candidate / rel.name, candidate / rel.parent.name / rel.name]
            candidate = next((c for c in inner if c.is_file()), candidate)
        key = os.path.abspath(candidate)
        if key not in seen:
            seen.add(key)
            out.append((origin, candidate))
    return out


def _tutor_read_answer(notebook, gid):
    """(code, None) from the cell with this grade_id, or (None, why not)."""
    import json
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError) as err:
        return None, f"could not read it ({{type(err).__name__}})"
    for cell in cells:
        if cell.get("metadata", {{}}).get("nbgrader", {{}}).get("grade_id") != gid:
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        lines = [line for line in source.splitlines()
                 if line.strip() not in ("### BEGIN " + "SOLUTION", "### END " + "SOLUTION", "# YOUR CODE HERE")]
        code = "\\n".join(lines).strip("\\n")
        if not code.strip() or "raise NotImplementedError" in code:
            return None, "it is a student copy: that cell is not answered"
        return code, None
    return None, f"it has no cell with grade_id {{gid}}"


def _tutor_answer(unit, path):
    print(f"Hint 3 of 3 for {{_tutor_title(unit)}}: the answer.")
    notes = []
    for origin, notebook in _tutor_candidates(path):
        explicit = origin != "the course folder"
        if not notebook.is_file():
            if explicit:
                notes.append(f"{{origin}} points at {{notebook}}, which does not exist")
            continue
        code, why = _tutor_read_answer(notebook, unit["grade_id"])
        if code is not None:
            print(f"From the solutions notebook ({{notebook}}):\\n")
            for line in code.splitlines():
                print("    " + line)
            print("\\nType it in yourself rather than pasting it, and check that you can say where every factor "
                  "comes from.")
            return
        notes.append(f"{{notebook}}: {{why}}")
    print("The answer lines are not in this notebook: they are in the course's solutions notebook, and I did not "
          "find it.")
    for note in notes:
        print("  (" + note + ")")
    print("To see the answer, give me the solutions notebook (backprop_ninja.ipynb from the course's solutions):")
    print("  * set its path first: import os; os.environ[\\"BACKPROP_NINJA_SOLUTIONS\\"] = \\"/path/to/backprop_ninja.ipynb\\"")
    name = unit["var"] if unit["exercise"] == 1 else f"ex{{unit['exercise']}}"  # "logits" would be Exercise 1's
    print(f"  * or pass it: hint({{name!r}}, path=\\"/path/to/backprop_ninja.ipynb\\")")
    print("  * or download the solutions notebook of the course (your instructor publishes it) and use one of the two.")
    print("Hints 1 and 2 often get you there too: the line is short once the rule and the local derivative are clear.")
'''

_GRAPH = '''

_TUTOR_COLOURS = {{
    "computed": ("#e3f2fd", "#1565c0"), "parameter": ("#ffe0b2", "#e65100"), "data": ("#eeeeee", "#616161"),
    "loss": ("#f3e5f5", "#6a1b9a"), "done": ("#c8e6c9", "#2e7d32"), "wrong": ("#ffcdd2", "#c62828"),
    "todo": ("#ffffff", "#9e9e9e"), "chosen": ("#ffd54f", "#d32f2f"), "consumer": ("#fff3c4", "#d32f2f"),
}}


def _tutor_draw(fills, chosen=(), consumers=(), edges=(), title="", legend=()):
    """The forward pass as a figure, in two halves side by side so that it fits a laptop screen: fills maps a
    variable to a colour key of _TUTOR_COLOURS. Positions are in inches, from the kit's layout."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Patch
    from matplotlib.path import Path
    from matplotlib.text import OffsetFrom
    layout = _TUTOR["graph"]
    width, height = layout["size"]
    # made by pyplot, so that Jupyter knows how to show it as a picture even before any other plot, then closed,
    # so that it is shown once, as the value of the call, and not again at the end of the cell
    fig = plt.figure(figsize=(width, height))
    plt.close(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    boxes = {{}}
    for node in layout["nodes"]:
        var = node["var"]
        role = "chosen" if var in chosen else "consumer" if var in consumers else "plain"
        face, edge = _TUTOR_COLOURS[role if role != "plain" else fills.get(var, node["kind"])]
        style = "square,pad=0.35" if node["kind"] in ("parameter", "data") else "round,pad=0.35"
        boxes[var] = ax.text(node["x"], node["y"], var, ha="center", va="center", fontsize={font}, zorder=3,
                             fontweight="bold" if role == "chosen" else "normal", gid=f"node:{{var}}:{{role}}",
                             family="monospace", bbox=dict(boxstyle=style, facecolor=face, edgecolor=edge,
                                                           linewidth={{"chosen": 2.5, "consumer": 1.8}}.get(role, 1.0),
                                                           linestyle="--" if node["kind"] == "data" else "-"))
    for a, b in layout["edges"]:
        lit = (a, b) in edges
        gid = f"edge:{{a}}->{{b}}:{{'highlight' if lit else 'plain'}}"
        look = dict(arrowstyle="-|>", color="#d32f2f" if lit else "#9e9e9e", linewidth=2.2 if lit else 1.0)
        route = layout["routes"].get(f"{{a}}->{{b}}")
        if route:  # from the first half to the second: along the way the layout gives, around the nodes
            ax.add_patch(FancyArrowPatch(path=Path(route), zorder=2, gid=gid, mutation_scale=10, **look))
            continue
        # from just below the box of a to just above the box of b (the boxes pad the text by about 3 points)
        ax.annotate("", xy=(0, 4), xycoords=OffsetFrom(boxes[b], (0.5, 1.0), "points"), xytext=(0, -4),
                    textcoords=OffsetFrom(boxes[a], (0.5, 0.0), "points"), zorder=2, gid=gid,
                    arrowprops=dict(shrinkA=0, shrinkB=0, **look))
    if title:
        ax.text(width / 2, height - 0.12, title, ha="center", va="top", fontsize=10)
    if legend:
        ax.legend(handles=[Patch(facecolor=_TUTOR_COLOURS[key][0], edgecolor=_TUTOR_COLOURS[key][1], label=label)
                           for key, label in legend], loc="lower right", ncol=3, fontsize=8, frameon=False)
    return fig


def _tutor_node(name):
    """(variable, grade_id or None) for a name, or (None, None)."""
    gid = _tutor_resolve(name)
    if gid is not None:
        return _TUTOR["units"][gid]["var"], gid
    if isinstance(name, str):
        key = name.strip()
        for node in _TUTOR["graph"]["nodes"]:
            if key in (node["var"], "d" + node["var"]):
                return node["var"], None
    return None, None


_TUTOR_WHOLE_TITLE = "The forward pass: down the left half, then down the right half"


def show_graph(name=None):
    """Draw the forward pass, in two halves side by side so that it fits the screen: one box per variable
    (parameters in square orange boxes, the data Xb dashed), an arrow from each variable to every line that uses it. With a name (as for hint: "counts", "dcounts", "ex2", ...), that
    variable and the variables made from it are highlighted, with the arrows between them. Returns the matplotlib
    Figure: a cell that ends with show_graph(...) displays it."""
    kinds = [("computed", "computed"), ("parameter", "parameter"), ("data", "data")]
    if name is None:
        return _tutor_draw({{}}, title=_TUTOR_WHOLE_TITLE, legend=kinds)
    try:
        var, gid = _tutor_node(name)
        if var is None:
            _tutor_unknown(name, "show_graph")
            return _tutor_draw({{}}, title=_TUTOR_WHOLE_TITLE, legend=kinds)
        unit = _TUTOR["units"].get(gid, {{}})
        if unit.get("exercise") == 4:
            return _tutor_draw({{}}, title="Exercise 4: the whole backward pass", legend=kinds)
        if "block" in unit:
            users = [line["var"] for line in unit["block"]]
            inside = {{var, *users}}
            edges = {{(a, b) for a, b in _TUTOR["graph"]["edges"] if a in inside and b in inside}}
            title = f"Exercise {{unit['exercise']}}: {{var}} and the lines it fuses"
        else:
            users = [b for a, b in _TUTOR["graph"]["edges"] if a == var]
            edges = {{(var, b) for b in users}}
            title = f"{{var}} and the lines that use it" if users else f"{{var}} (no line uses it)"
        lit = "the rest of the block" if "block" in unit else "uses " + var
        return _tutor_draw({{}}, chosen={{var}}, consumers=set(users), edges=edges, title=title,
                           legend=kinds + [("chosen", var), ("consumer", lit)])
    except Exception as err:  # a picture must never stop the notebook
        print(f"show_graph could not draw ({{type(err).__name__}}: {{err}}).")
        return None


def draw_progress(statuses):
    """Draw the forward pass coloured by the status of each gradient of Exercise 1. statuses maps a variable (or
    its d-name) to "done", "wrong" or "todo" ("not yet" counts as todo); a variable left out is todo. Returns the
    matplotlib Figure."""
    try:
        fills = {{var: "todo" for var in _TUTOR["ex1"]}}
        items = statuses.items() if isinstance(statuses, dict) else ()
        if not isinstance(statuses, dict):
            print("draw_progress expects a dict such as {{\\"counts\\": \\"done\\", \\"probs\\": \\"wrong\\"}}.")
        for name, status in items:
            var, _ = _tutor_node(name)
            if var in fills:
                fills[var] = status if status in ("done", "wrong") else "todo"
        tally = {{key: sum(1 for value in fills.values() if value == key) for key in ("done", "wrong", "todo")}}
        title = f"Exercise 1: {{tally['done']}} of {{len(fills)}} gradients done"
        return _tutor_draw(fills, title=title, legend=[(key, f"{{key}} ({{tally[key]}})") for key in tally])
    except Exception as err:
        print(f"draw_progress could not draw ({{type(err).__name__}}: {{err}}).")
        return None
'''


def _literal(value, depth: int = 0) -> str:
    """The data as a Python literal: JSON (the data has no true, false or null), each string whole on one line (so a
    hint text can be found in the cell verbatim), the outer levels one entry per line, the inner ones compact."""
    if depth >= 3 or not isinstance(value, (dict, list)) or not any(isinstance(v, (dict, list)) for v in
                                                                    (value.values() if isinstance(value, dict) else value)):
        return json.dumps(value, ensure_ascii=False)
    pad = " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(key)}: {_literal(item, depth + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad[:-1] + "}"
    return "[\n" + ",\n".join(pad + _literal(item, depth + 1) for item in value) + "\n" + pad[:-1] + "]"


def notebook_code(*, with_hints: bool = True) -> str:
    """The source of the notebook's tutor cell (see the module docstring). Deterministic: the same table gives the
    same text."""
    data = _literal(tutor_data(with_hints=with_hints))
    body = _HEADER + (_HINTS_ON if with_hints else _HINTS_OFF) + _GRAPH
    return body.format(data=data, font=FONT_POINTS).rstrip("\n") + "\n"
