"""The notebook's tutor: hint(), show_graph() and draw_progress(), as the student's tutor cell runs them.

`backprop-ninja assign` inlines this file as it is (without this docstring and the `from __future__` line) into the
notebook's tutor cell, just after a literal `_TUTOR = {...}` that `backprop_ninja.tutor.tutor_data()` builds from
the table of units. So it may import only the standard library and matplotlib, inside its functions: the cell runs
on Colab without the kit, and it runs in the student's namespace, where every top-level name of this file lands
(hence the `_tutor` prefix on all but hint, show_graph and draw_progress).

Everything it knows (the variables, their lines, the graph's layout, the hint texts) it reads from `_TUTOR`. A test
that imports this module sets `_TUTOR` on it first.

* `hint(name, path=None)`: a ladder of three hints per gradient (where the variable is used and the rule that
  applies; the local derivative of each line that uses it; the answer line, read from the solutions notebook);
  in a release built without hints it only says so;
* `show_graph(name=None)`: the forward pass drawn in two halves side by side, with `name` and the lines that use it
  highlighted;
* `draw_progress(statuses)`: the same graph coloured by the status of each gradient ("done", "wrong", "todo").
"""
from __future__ import annotations

# The data, set just above this code in the notebook cell (or by a test). Only annotated here: an assignment would
# overwrite the cell's literal when this file is inlined after it.
_TUTOR: dict

_TUTOR_FONT_POINTS = 9  # the size of a node's name in the graph; the kit's layout measures its boxes from it


def _tutor_resolve(name):
    """The grade_id a name stands for, or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().strip("`'\"").replace(" ", "")
    aliases = _TUTOR["aliases"]
    if key in aliases:
        return aliases[key]
    key = key.lower().replace("exercise", "ex")
    return aliases.get(key)


def _tutor_unknown(name, function):
    import difflib
    known = list(_TUTOR["aliases"])
    guess = difflib.get_close_matches(str(name), known, n=1)
    print(f"{function}({name!r}): I do not know that name." + (f" Did you mean {guess[0]!r}?" if guess else ""))
    print("Ask by the variable whose gradient you are writing, with or without the d: "
          f"{function}(\"counts\") or {function}(\"dcounts\").")
    print("Exercise 1:", ", ".join(_TUTOR["ex1"]))
    print(f"Exercises 2, 3 and 4: {function}(\"ex2\"), {function}(\"ex3\"), {function}(\"ex4\").")


_tutor_calls = {}


def hint(name=None, path=None):
    """Hints for one gradient, one step per call: where the variable is used and which rule applies; then the local
    derivative of each line that uses it; then the answer line from the course's solutions notebook.

    name: an Exercise 1 variable with or without its d ("counts", "dcounts", "W1"), "ex2", "ex3", "ex4"
    (Exercises 2 to 4), or any grade_id ("ex1_counts", "ex2_logits"). Each name counts its own calls.
    path: where the solutions notebook is, if BACKPROP_NINJA_SOLUTIONS is not set and it is not in the course
    folder (solutions/backprop_ninja/backprop_ninja.ipynb above this notebook's folder).
    Prints the hint and returns None. In a release built without hints, it only says that hints are off.
    """
    if not _TUTOR.get("with_hints"):  # a release built without hints carries none of their texts
        print("Hints are turned off for this course. show_graph(name) still draws where a variable is used.")
        return None
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
            print(f"\nWhen you are ready: hint({name!r}) again shows {again}.")
    except Exception as err:  # a hint must never stop the notebook
        print(f"The tutor hit a problem ({type(err).__name__}: {err}). Your work is unaffected.")
    return None


def _tutor_level_2_name(unit):
    """Exercises 2 and 3 get the steps of a derivation on paper, Exercise 4 a plan; Exercise 1 one local derivative
    per line that uses the variable."""
    return {2: "the steps of the derivation", 3: "the steps of the derivation",
             4: "the plan of the function"}.get(unit["exercise"], "the local derivatives")


def _tutor_title(unit):
    if unit["exercise"] == 1:
        return "d" + unit["var"]
    if unit["exercise"] == 4:
        return "Exercise 4 (manual_backward)"
    return f"Exercise {unit['exercise']} (d{unit['var']} in one expression)"


def _tutor_print(text, indent="    "):
    import textwrap
    for paragraph in str(text).splitlines() or [""]:
        print(textwrap.fill(paragraph, width=110, initial_indent=indent, subsequent_indent=indent,
                            break_long_words=False, break_on_hyphens=False) if paragraph.strip() else "")


def _tutor_shape(unit):
    return f", {unit['shape']}" if unit.get("shape") else ""


def _tutor_rule(kind, unit, consumer=None, **more):
    """One rule of the table, filled in for this variable (and one line that uses it)."""
    fields = dict(var=unit["var"], shape=unit.get("shape", ""), **more)
    if consumer is not None:
        fields.update(consumer=consumer["var"], line=consumer["forward"])
    _tutor_print(_TUTOR["rules"][kind].format(**fields), indent="")


def _tutor_where(unit):
    var, consumers = unit["var"], unit["consumers"]
    print(f"Hint 1 of 3 for {_tutor_title(unit)}: where does it go, and which rule applies?")
    if unit["exercise"] == 4:
        _tutor_print(unit.get("overview", ""), indent="")
        print("It returns [" + ", ".join(unit["returns"]) + "].")
        return
    if unit["exercise"] in (2, 3):
        print(f"These lines of the forward pass, from {var} to {consumers[0]['var']}, become one step:")
        for line in unit["block"]:
            print("    " + line["forward"])
        _tutor_print(unit.get("overview", ""), indent="")
        print(f"d{var} has the shape of {var}{_tutor_shape(unit)}.")
        return
    if unit["forward"] == "parameter":
        print(f"{var} is a parameter: no line computes it. These lines use it:")
    else:
        print(f"`{unit['forward']}` made {var}. These lines use it:")
    for consumer in consumers:
        print("    " + consumer["forward"])
    if len(consumers) > 1:
        _tutor_rule("used_twice", unit, count=len(consumers))
    elif unit["rules"].get(consumers[0]["var"]) != "loss":
        _tutor_rule("used_once", unit)
    for consumer in consumers:
        _tutor_rule(unit["rules"].get(consumer["var"], "entrywise"), unit, consumer)
        dims = unit.get("broadcast", {}).get(consumer["var"])
        if dims:
            _tutor_rule("broadcast", unit, consumer, dims=dims)
    print(f"d{var} has exactly the shape of {var}{_tutor_shape(unit)}.")


def _tutor_local(unit):
    var, hints = unit["var"], unit.get("hints", {})
    print(f"Hint 2 of 3 for {_tutor_title(unit)}: {_tutor_level_2_name(unit)}.")
    shown = set()
    for consumer in unit["consumers"]:
        shown.add(consumer["var"])
        print(f"  {consumer['forward']}")
        text = hints.get(consumer["var"])
        if text:
            _tutor_print(text)
        else:
            _tutor_print(f"Ask: when one entry of {var} changes a little, how does {consumer['var']} change? "
                         f"That rate, chained with the gradient that comes back to {consumer['var']}, is this "
                         "line's contribution.")
    for key, text in hints.items():  # a general hint (Exercise 4), not tied to one line
        if key not in shown and text:
            _tutor_print(text, indent="  ")
    if unit["exercise"] == 4 and not any(hints.values()):
        print("  Each part has its own hints: hint(\"ex2\"), hint(\"ex3\") and hint(\"<variable>\") for the rest.")
    if unit["exercise"] == 1 and len(unit["consumers"]) > 1:
        print(f"Then add the contributions: one line each, d{var} = ... and d{var} += ... .")


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
        return None, f"could not read it ({type(err).__name__})"
    for cell in cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") != gid:
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        lines = [line for line in source.splitlines()
                 if line.strip() not in ("### BEGIN " + "SOLUTION", "### END " + "SOLUTION", "# YOUR CODE HERE")]
        code = "\n".join(lines).strip("\n")
        if not code.strip() or "raise NotImplementedError" in code:
            return None, "it is a student copy: that cell is not answered"
        return code, None
    return None, f"it has no cell with grade_id {gid}"


def _tutor_answer(unit, path):
    print(f"Hint 3 of 3 for {_tutor_title(unit)}: the answer.")
    notes = []
    for origin, notebook in _tutor_candidates(path):
        explicit = origin != "the course folder"
        if not notebook.is_file():
            if explicit:
                notes.append(f"{origin} points at {notebook}, which does not exist")
            continue
        code, why = _tutor_read_answer(notebook, unit["grade_id"])
        if code is not None:
            print(f"From the solutions notebook ({notebook}):\n")
            for line in code.splitlines():
                print("    " + line)
            print("\nType it in yourself rather than pasting it, and check that you can say where every factor "
                  "comes from.")
            return
        notes.append(f"{notebook}: {why}")
    print("The answer lines are not in this notebook: they are in the course's solutions notebook, and I did not "
          "find it.")
    for note in notes:
        print("  (" + note + ")")
    print("To see the answer, give me the solutions notebook (backprop_ninja.ipynb from the course's solutions):")
    print("  * set its path first: import os; "
          "os.environ[\"BACKPROP_NINJA_SOLUTIONS\"] = \"/path/to/backprop_ninja.ipynb\"")
    name = unit["var"] if unit["exercise"] == 1 else f"ex{unit['exercise']}"  # "logits" would be Exercise 1's
    print(f"  * or pass it: hint({name!r}, path=\"/path/to/backprop_ninja.ipynb\")")
    print("  * or download the solutions notebook of the course (your instructor publishes it) and use one of the two.")
    print("Hints 1 and 2 often get you there too: the line is short once the rule and the local derivative are clear.")


_TUTOR_COLOURS = {
    "computed": ("#e3f2fd", "#1565c0"), "parameter": ("#ffe0b2", "#e65100"), "data": ("#eeeeee", "#616161"),
    "loss": ("#f3e5f5", "#6a1b9a"), "done": ("#c8e6c9", "#2e7d32"), "wrong": ("#ffcdd2", "#c62828"),
    "todo": ("#ffffff", "#9e9e9e"), "chosen": ("#ffd54f", "#d32f2f"), "consumer": ("#fff3c4", "#d32f2f"),
}


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
    boxes = {}
    for node in layout["nodes"]:
        var = node["var"]
        role = "chosen" if var in chosen else "consumer" if var in consumers else "plain"
        face, edge = _TUTOR_COLOURS[role if role != "plain" else fills.get(var, node["kind"])]
        style = "square,pad=0.35" if node["kind"] in ("parameter", "data") else "round,pad=0.35"
        boxes[var] = ax.text(node["x"], node["y"], var, ha="center", va="center", fontsize=_TUTOR_FONT_POINTS,
                             zorder=3, fontweight="bold" if role == "chosen" else "normal", gid=f"node:{var}:{role}",
                             family="monospace", bbox=dict(boxstyle=style, facecolor=face, edgecolor=edge,
                                                           linewidth={"chosen": 2.5, "consumer": 1.8}.get(role, 1.0),
                                                           linestyle="--" if node["kind"] == "data" else "-"))
    for a, b in layout["edges"]:
        lit = (a, b) in edges
        gid = f"edge:{a}->{b}:{'highlight' if lit else 'plain'}"
        look = dict(arrowstyle="-|>", color="#d32f2f" if lit else "#9e9e9e", linewidth=2.2 if lit else 1.0)
        route = layout["routes"].get(f"{a}->{b}")
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
    (parameters in square orange boxes, the data Xb dashed), an arrow from each variable to every line that uses
    it. With a name (as for hint: "counts", "dcounts", "ex2", ...), that variable and the variables made from it are
    highlighted, with the arrows between them. Returns the matplotlib Figure: a cell that ends with show_graph(...)
    displays it."""
    kinds = [("computed", "computed"), ("parameter", "parameter"), ("data", "data")]
    if name is None:
        return _tutor_draw({}, title=_TUTOR_WHOLE_TITLE, legend=kinds)
    try:
        var, gid = _tutor_node(name)
        if var is None:
            _tutor_unknown(name, "show_graph")
            return _tutor_draw({}, title=_TUTOR_WHOLE_TITLE, legend=kinds)
        unit = _TUTOR["units"].get(gid, {})
        if unit.get("exercise") == 4:
            return _tutor_draw({}, title="Exercise 4: the whole backward pass", legend=kinds)
        if "block" in unit:
            users = [line["var"] for line in unit["block"]]
            inside = {var, *users}
            edges = {(a, b) for a, b in _TUTOR["graph"]["edges"] if a in inside and b in inside}
            title = f"Exercise {unit['exercise']}: {var} and the lines it fuses"
        else:
            users = [b for a, b in _TUTOR["graph"]["edges"] if a == var]
            edges = {(var, b) for b in users}
            title = f"{var} and the lines that use it" if users else f"{var} (no line uses it)"
        lit = "the rest of the block" if "block" in unit else "uses " + var
        return _tutor_draw({}, chosen={var}, consumers=set(users), edges=edges, title=title,
                           legend=kinds + [("chosen", var), ("consumer", lit)])
    except Exception as err:  # a picture must never stop the notebook
        print(f"show_graph could not draw ({type(err).__name__}: {err}).")
        return None


def draw_progress(statuses):
    """Draw the forward pass coloured by the status of each gradient of Exercise 1. statuses maps a variable (or
    its d-name) to "done", "wrong" or "todo" ("not yet" counts as todo); a variable left out is todo. Returns the
    matplotlib Figure."""
    try:
        fills = {var: "todo" for var in _TUTOR["ex1"]}
        items = statuses.items() if isinstance(statuses, dict) else ()
        if not isinstance(statuses, dict):
            print("draw_progress expects a dict such as {\"counts\": \"done\", \"probs\": \"wrong\"}.")
        for name, status in items:
            var, _ = _tutor_node(name)
            if var in fills:
                fills[var] = status if status in ("done", "wrong") else "todo"
        tally = {key: sum(1 for value in fills.values() if value == key) for key in ("done", "wrong", "todo")}
        title = f"Exercise 1: {tally['done']} of {len(fills)} gradients done"
        return _tutor_draw(fills, title=title, legend=[(key, f"{key} ({tally[key]})") for key in tally])
    except Exception as err:
        print(f"draw_progress could not draw ({type(err).__name__}: {err}).")
        return None
