"""The notebook's tutor cell, generated from the table of units: the hint ladder, the graph, what it must not contain."""
from __future__ import annotations

import ast
import base64
import json
import re
import sys

import matplotlib
import pytest

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from backprop_ninja.assign import solution_cells  # noqa: E402
from backprop_ninja.tutor import BOX_HALF_HEIGHT, LOSS_LINE, graph, notebook_code, tutor_data  # noqa: E402
from backprop_ninja.units import EXERCISE_1, UNITS  # noqa: E402

ALLOWED_IMPORTS = {"torch", "matplotlib", "os", "json", "pathlib"} | set(sys.stdlib_module_names)
LINES = {u.var: u.forward for u in EXERCISE_1 if u.forward != "parameter"} | {"loss": LOSS_LINE}
GRAPH_NODES = {u.var for u in EXERCISE_1} | {"Xb", "loss"}


@pytest.fixture(scope="module")
def code() -> str:
    return notebook_code()


@pytest.fixture
def tutor(code, monkeypatch, tmp_path):
    """A fresh namespace with the cell run in it, from a folder with no solutions notebook above it."""
    monkeypatch.delenv("BACKPROP_NINJA_SOLUTIONS", raising=False)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "<tutor cell>", "exec"), namespace)
    return namespace


def ask(tutor, capsys, *args, **kwargs) -> str:
    assert tutor["hint"](*args, **kwargs) is None
    return capsys.readouterr().out


def hint_texts() -> list[str]:
    return [text for unit in UNITS for text in (getattr(unit, "hints", None) or {}).values() if text]


def solutions_notebook(path, grade_id: str, code: str):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "a", "metadata": {"nbgrader": {"grade_id": "imports", "solution": False}},
         "source": ["import torch\n"], "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "b", "metadata": {"nbgrader": {"grade_id": grade_id, "solution": True}},
         "source": ["### BEGIN SOLUTION\n", code + "\n", "### END SOLUTION"], "outputs": [], "execution_count": None},
    ]}
    path.write_text(json.dumps(nb))
    return path


def test_the_cell_is_deterministic_and_imports_only_what_colab_has(code):
    assert notebook_code() == code
    for source in (code, notebook_code(with_hints=False)):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, "no relative imports"
                names = [node.module]
            else:
                continue
            assert all(name.split(".")[0] in ALLOWED_IMPORTS for name in names), names


def test_the_data_is_a_python_literal_of_the_table(code):
    assign = next(node for node in ast.parse(code).body if isinstance(node, ast.Assign)
                  and [t.id for t in node.targets] == ["_TUTOR"])
    data = ast.literal_eval(assign.value)
    assert data == tutor_data()
    assert set(data["units"]) == {u.grade_id for u in UNITS}
    counts = data["units"]["ex1_counts"]
    assert counts["forward"] == "counts = norm_logits.exp()"
    assert counts["consumers"] == [{"var": "probs", "forward": "probs = counts * counts_sum_inv"},
                                   {"var": "counts_sum", "forward": "counts_sum = counts.sum(1, keepdim=True)"}]
    assert data["units"]["ex1_logprobs"]["consumers"] == [{"var": "loss", "forward": LOSS_LINE}]
    for unit in UNITS:
        entry = data["units"][unit.grade_id]
        assert (entry["var"], entry["exercise"], entry["grade_id"]) == (unit.var, unit.exercise, unit.grade_id)
        assert entry["hints"] == dict(getattr(unit, "hints", None) or {})


def test_the_cell_defines_only_the_tutor_and_private_names(code):
    top = set()
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top.add(node.name)
        elif isinstance(node, ast.Assign):
            top |= {target.id for target in node.targets}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            top |= {alias.asname or alias.name for alias in node.names}
    # the cell runs in the student's namespace: it must not overwrite n, h, counts, check, ...
    assert {name for name in top if not name.lower().startswith("_tutor")} == {
        "hint", "show_graph", "draw_progress"}


def test_no_solution_line_is_in_the_cell(code):
    for variant in (code, notebook_code(with_hints=False)):
        for grade_id, cell in solution_cells().items():
            for line in cell.splitlines():
                line = line.strip()
                if len(line) >= 12 and not line.startswith(("#", '"""', "def ", "return")):
                    assert line not in variant, f"{grade_id}: {line!r}"


def test_the_ladder_gives_three_different_levels(tutor, capsys):
    levels = [ask(tutor, capsys, "counts") for _ in range(3)]
    assert len(set(levels)) == 3
    assert [level.startswith(f"Hint {i} of 3") for i, level in enumerate(levels, 1)] == [True] * 3
    assert ask(tutor, capsys, "dcounts").startswith("Hint 3 of 3")  # the d-name is the same variable
    assert ask(tutor, capsys, "probs").startswith("Hint 1 of 3")    # each name counts its own calls


@pytest.mark.parametrize("var", ["counts", "bndiff", "hprebn", "logits"])
def test_level_1_names_every_consumer_line_and_says_add(tutor, capsys, var):
    unit = next(u for u in EXERCISE_1 if u.var == var)
    assert len(unit.consumers) == 2
    out = ask(tutor, capsys, var)
    for consumer in unit.consumers:
        assert LINES[consumer] in out
    assert " add " in out and "+=" in out


def test_level_1_for_a_parameter_and_for_the_loss(tutor, capsys):
    out = ask(tutor, capsys, "W2")
    assert "parameter" in out and "logits = h @ W2 + b2" in out
    assert LOSS_LINE in ask(tutor, capsys, "logprobs")


BROADCAST = [(u.var, consumer) for u in EXERCISE_1 for consumer, dims in
             (getattr(u, "broadcast", None) or {}).items() if dims]


@pytest.mark.skipif(not BROADCAST, reason="the table has no broadcast notes yet")
@pytest.mark.parametrize("var, consumer", BROADCAST)
def test_level_1_says_sum_for_a_broadcast_variable(tutor, capsys, var, consumer):
    unit = next(u for u in EXERCISE_1 if u.var == var)
    out = ask(tutor, capsys, var)
    assert "broadcast" in out and "sum" in out and unit.broadcast[consumer] in out
    if getattr(unit, "shape", ""):
        assert unit.shape in out


def test_no_broadcast_rule_where_nothing_broadcasts(tutor, capsys):
    assert "broadcast" not in ask(tutor, capsys, "h")


def test_level_2_gives_each_consumers_local_derivative(tutor, capsys):
    for unit in UNITS:
        name = unit.var if unit.exercise == 1 else f"ex{unit.exercise}"
        ask(tutor, capsys, name)
        out = ask(tutor, capsys, name)
        assert out.startswith("Hint 2 of 3")
        for text in (getattr(unit, "hints", None) or {}).values():
            words = text.split()
            assert " ".join(words[:6]) in " ".join(out.split()), (unit.grade_id, text)  # wrapped, not changed


def test_exercises_2_to_4_have_their_own_ladder(tutor, capsys):
    out = ask(tutor, capsys, "ex2")
    assert "logits" in out and LOSS_LINE in out and "logit_maxes = logits.max(1, keepdim=True).values" in out
    out = ask(tutor, capsys, "ex3_hprebn")
    assert LINES["bnvar"] in out and "hpreact = bngain * bnraw + bnbias" in out
    assert "manual_backward" in ask(tutor, capsys, "Exercise 4")
    assert ask(tutor, capsys, "ex1_logits") != ask(tutor, capsys, "ex2")  # ex1's logits is another unit


@pytest.mark.parametrize("name", ["ex2", "ex3"])
def test_exercises_2_and_3_ladder_names_its_steps_and_its_own_name(tutor, capsys, name):
    """Level 2 of a one-go exercise is the derivation's steps; without solutions, level 3 suggests `hint("ex2",
    path=...)`, since `hint("logits", ...)` would reach Exercise 1's unit."""
    assert "again shows the steps of the derivation" in ask(tutor, capsys, name)
    second = ask(tutor, capsys, name)
    assert second.startswith(f"Hint 2 of 3 for Exercise {name[-1]} ") and "the steps of the derivation" in second
    third = ask(tutor, capsys, name)
    assert f"hint({name!r}, path=" in third and "hint('logits'" not in third and "hint('hprebn'" not in third


def test_level_1_of_the_one_go_exercises_teaches_the_one_go_view(tutor, capsys):
    """Not Exercise 1's chain again: no per-line rule, no `+=` (issue 15, item 9)."""
    for name in ("ex2", "ex3"):
        out = ask(tutor, capsys, name)
        assert "one function" in out and "simplify" in out
        assert "+=" not in out and "Rule (entry by entry)" not in out and "Rule (broadcast)" not in out


def test_level_2_is_titled_for_what_it_gives(tutor, capsys):
    titles = {"counts": "the local derivatives", "ex2": "the steps of the derivation",
              "ex3": "the steps of the derivation", "ex4": "the plan of the function"}
    for name, title in titles.items():
        ask(tutor, capsys, name)
        assert ask(tutor, capsys, name).splitlines()[0].endswith(f": {title}.")


def test_no_rung_speaks_of_a_gradient_the_notebook_does_not_have(tutor, capsys):
    """The loss has no `dloss` in the notebook: the first rung of dlogprobs says where the backward pass starts."""
    for unit in UNITS:
        name = unit.var if unit.exercise == 1 else f"ex{unit.exercise}"
        for _ in range(2):
            assert not re.search(r"\bdloss\b", ask(tutor, capsys, name)), unit.grade_id
    first = ask(tutor, capsys, "probs")
    assert "dlogprobs" not in first  # the first rung names the rule, not the gradient it is applied to


def test_level_1_of_a_variable_used_twice_warns_of_aliasing(tutor, capsys):
    out = " ".join(ask(tutor, capsys, "hprebn").split())
    assert ".clone()" in out and "in place" in out


def test_level_1_of_the_lookup_says_repeats_add(tutor, capsys):
    out = " ".join(ask(tutor, capsys, "C").split())
    assert "gradients add" in out and "an index repeats" in out


def test_level_3_prints_the_answer_from_the_solutions_notebook(tutor, capsys, tmp_path, monkeypatch):
    answer = "dcounts = 'the line from the solutions'"
    monkeypatch.setenv("BACKPROP_NINJA_SOLUTIONS", str(solutions_notebook(tmp_path / "sol.ipynb", "ex1_counts", answer)))
    ask(tutor, capsys, "counts"), ask(tutor, capsys, "counts")
    out = ask(tutor, capsys, "counts")
    assert answer in out and "BEGIN SOLUTION" not in out
    assert answer in ask(tutor, capsys, "counts")  # and again on later calls


def test_level_3_reads_path_and_the_course_folder(tutor, capsys, tmp_path, monkeypatch):
    given = solutions_notebook(tmp_path / "given.ipynb", "ex1_h", "dh = 'from path='")
    for _ in range(2):
        ask(tutor, capsys, "h")
    assert "dh = 'from path='" in ask(tutor, capsys, "h", path=str(given))
    # a checkout: release/backprop_ninja/ is the notebook's folder, solutions/ is two levels up
    course = tmp_path / "course"
    (course / "release" / "backprop_ninja").mkdir(parents=True)
    (course / "solutions" / "backprop_ninja").mkdir(parents=True)
    solutions_notebook(course / "solutions" / "backprop_ninja" / "backprop_ninja.ipynb", "ex1_W2", "dW2 = 'course'")
    monkeypatch.chdir(course / "release" / "backprop_ninja")
    for _ in range(2):
        ask(tutor, capsys, "W2")
    assert "dW2 = 'course'" in ask(tutor, capsys, "W2")


def test_level_3_without_solutions_says_how_to_get_them(tutor, capsys, tmp_path, monkeypatch):
    for _ in range(2):
        ask(tutor, capsys, "bnvar")
    out = ask(tutor, capsys, "bnvar")
    assert "BACKPROP_NINJA_SOLUTIONS" in out and "path=" in out and "download" in out
    assert "dbnvar =" not in out
    # a student's own copy (answer cells not filled in) is not taken for the solutions
    student = tmp_path / "student.ipynb"
    solutions_notebook(student, "ex1_bnvar", "# YOUR CODE HERE\nraise NotImplementedError()")
    monkeypatch.setenv("BACKPROP_NINJA_SOLUTIONS", str(student))
    out = ask(tutor, capsys, "bnvar")
    assert "student copy" in out and "NotImplementedError" not in out
    monkeypatch.setenv("BACKPROP_NINJA_SOLUTIONS", str(tmp_path / "missing.ipynb"))
    assert "does not exist" in ask(tutor, capsys, "bnvar")


@pytest.mark.parametrize("name", ["countz", "dx", "", None, 3, ["counts"]])
def test_unknown_names_get_a_helpful_message(tutor, capsys, name):
    out = ask(tutor, capsys, name)
    assert "I do not know that name" in out and "hint(\"ex2\")" in out
    assert all(u.var in out for u in EXERCISE_1)
    if name is not None:  # show_graph() with no name draws the whole graph
        assert isinstance(tutor["show_graph"](name), Figure)
        assert "I do not know that name" in capsys.readouterr().out


def test_hint_with_no_name_explains_itself(tutor, capsys):
    assert "I do not know that name" in ask(tutor, capsys)


def test_a_close_typo_gets_a_suggestion(tutor, capsys):
    assert "Did you mean 'counts'?" in ask(tutor, capsys, "countz")


def test_without_hints_no_hint_text_is_in_the_cell(capsys, tmp_path, monkeypatch):
    code = notebook_code(with_hints=False)
    texts = hint_texts()
    for text in texts:
        assert text not in code
        assert text in notebook_code()  # the hinted cell does carry them
    for unit in UNITS:
        for dims in (getattr(unit, "broadcast", None) or {}).values():
            assert f"'{dims}'" not in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "<tutor cell>", "exec"), namespace)
    for _ in range(3):
        assert namespace["hint"]("counts") is None
        assert "turned off" in capsys.readouterr().out
    assert isinstance(namespace["show_graph"]("counts"), Figure)


def graph_parts(fig):
    """(the node labels, the arrows): an arrow within a half is an annotation, one between halves a patch."""
    (ax,) = fig.axes
    FigureCanvasAgg(fig).draw()  # the arrows are placed at draw time: this must work (a closed figure has no canvas)
    labels = [t for t in ax.texts if (t.get_gid() or "").startswith("node:")]
    edges = [a for a in ax.get_children() if (a.get_gid() or "").startswith("edge:")]
    return labels, edges


def edge_ends(edge) -> tuple[str, str]:
    a, b = edge.get_gid().split(":")[1].split("->")
    return a, b


def test_show_graph_draws_every_variable_once_with_an_arrow_per_consumer(tutor):
    fig = tutor["show_graph"]()
    assert isinstance(fig, Figure)
    labels, edges = graph_parts(fig)
    assert sorted(t.get_text() for t in labels) == sorted(GRAPH_NODES)
    expected = {f"{u.var}->{c}" for u in EXERCISE_1 for c in u.consumers} | {"Xb->emb"}
    assert {e.get_gid().split(":")[1] for e in edges} == expected
    assert len(edges) == len(expected)
    params = {t.get_text(): t.get_bbox_patch().get_facecolor() for t in labels}
    assert params["W1"] != params["counts"]  # parameters are drawn differently
    # the layout is layered: within a half each arrow goes down at least one row; between the halves it goes from
    # the first half's left column to the second's right one
    xs = {t.get_text(): t.get_position()[0] for t in labels}
    ys = {t.get_text(): t.get_position()[1] for t in labels}
    across = [edge_ends(e) for e in edges if isinstance(e, FancyArrowPatch)]
    assert across and all(xs[a] < xs[b] for a, b in across)
    assert all(ys[a] > ys[b] for a, b in map(edge_ends, edges) if (a, b) not in across)
    positions = [t.get_position() for t in labels]
    assert len(set(positions)) == len(positions)


def test_show_graph_highlights_the_variable_and_its_consumers(tutor):
    labels, edges = graph_parts(tutor["show_graph"]("dcounts"))
    roles = {t.get_text(): t.get_gid().split(":")[2] for t in labels}
    assert roles.pop("counts") == "chosen"
    assert roles.pop("probs") == roles.pop("counts_sum") == "consumer"
    assert set(roles.values()) == {"plain"}
    lit = {e.get_gid().split(":")[1] for e in edges if e.get_gid().endswith(":highlight")}
    assert lit == {"counts->probs", "counts->counts_sum"}
    chosen = next(t for t in labels if t.get_text() == "counts").get_bbox_patch()
    plain = next(t for t in labels if t.get_text() == "h").get_bbox_patch()
    assert chosen.get_edgecolor() != plain.get_edgecolor() and chosen.get_linewidth() > plain.get_linewidth()


def test_show_graph_for_a_fused_exercise_lights_the_block(tutor):
    fig = tutor["show_graph"]("ex3")
    labels, edges = graph_parts(fig)
    roles = {t.get_text(): t.get_gid().split(":")[2] for t in labels}
    assert roles["hprebn"] == "chosen" and roles["bnvar"] == roles["hpreact"] == "consumer"
    assert roles["h"] == "plain"
    # most lines of the block do not read hprebn: the legend does not say they use it
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "uses hprebn" not in legend and "the rest of the block" in legend
    legend = [t.get_text() for t in tutor["show_graph"]("counts").axes[0].get_legend().get_texts()]
    assert "uses counts" in legend


def test_draw_progress_colours_by_status(tutor, capsys):
    fig = tutor["draw_progress"]({"counts": "done", "dprobs": "wrong", "h": "not yet", "nonsense": "done"})
    labels, _ = graph_parts(fig)
    face = {t.get_text(): t.get_bbox_patch().get_facecolor() for t in labels}
    assert len({face["counts"], face["probs"], face["h"]}) == 3
    assert face["h"] == face["C"]  # left out: todo
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["done (1)", "wrong (1)", "todo (24)"]
    assert isinstance(tutor["draw_progress"]("not a dict"), Figure)
    assert "expects a dict" in capsys.readouterr().out


SCREEN = (900, 600)  # what a laptop shows of a notebook's output without scrolling, in pixels
NOTEBOOK_DPI = 100  # matplotlib's figure.dpi, which Jupyter's inline backend uses
PICTURES = [("show_graph", None), ("draw_progress", {"counts": "done", "dprobs": "wrong"})] + [
    ("show_graph", name) for name in [u.var for u in EXERCISE_1] + ["ex2", "ex3", "ex4"]]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def draw(tutor, function, argument):
    return tutor[function]() if argument is None else tutor[function](argument)


@pytest.mark.parametrize("function, argument", PICTURES, ids=lambda p: p if isinstance(p, str) else "")
def test_every_picture_fits_a_laptop_screen_with_every_node_in_view(tutor, function, argument):
    import io

    fig = draw(tutor, function, argument)
    fig.set_dpi(NOTEBOOK_DPI)
    labels, _ = graph_parts(fig)
    width, height = fig.get_size_inches() * NOTEBOOK_DPI
    assert width <= SCREEN[0] and height <= SCREEN[1]
    renderer = fig.canvas.get_renderer()
    for label in labels:  # the chosen variable among them: nothing is cut off or outside the picture
        box = label.get_bbox_patch().get_window_extent(renderer)
        assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height, label.get_text()
    if argument not in (None, "ex4") and function == "show_graph":
        assert any(label.get_gid().endswith(":chosen") for label in labels)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=NOTEBOOK_DPI, bbox_inches="tight")  # as the inline backend does
    shown = png_size(buffer.getvalue())
    assert shown[0] <= SCREEN[0] and shown[1] <= SCREEN[1], shown
    assert shown[0] >= 0.5 * SCREEN[0], "not shrunk out of reading size"


def test_the_nodes_are_readable_and_do_not_overlap(tutor):
    fig = tutor["show_graph"]("counts_sum_inv")
    labels, _ = graph_parts(fig)
    renderer = fig.canvas.get_renderer()
    assert min(label.get_fontsize() for label in labels) >= 9
    boxes = [(label.get_text(), label.get_bbox_patch().get_window_extent(renderer)) for label in labels]
    for i, (name, box) in enumerate(boxes):
        for other, second in boxes[i + 1:]:
            assert not box.overlaps(second), (name, other)


def test_an_arrow_between_the_halves_goes_around_every_node(tutor):
    layout = graph()
    assert layout["routes"], "the pass is cut in two halves, joined by at least one arrow"
    fig = tutor["show_graph"]()
    labels, _ = graph_parts(fig)
    renderer = fig.canvas.get_renderer()
    to_inches = fig.dpi_scale_trans.inverted()
    boxes = {label.get_text(): label.get_bbox_patch().get_window_extent(renderer).transformed(to_inches)
             for label in labels}
    for edge, route in layout["routes"].items():
        a, b = edge.split("->")
        assert abs(route[0][1] - (boxes[a].y0 + boxes[a].y1) / 2) == pytest.approx(BOX_HALF_HEIGHT, abs=0.03)
        for start, end in zip(route, route[1:]):
            assert start[0] == end[0] or start[1] == end[1], "square corners"
            for name, box in boxes.items():
                if (name == a and start == route[0]) or (name == b and end == route[-1]):
                    continue  # where it leaves a and enters b
                left, right = sorted((start[0], end[0]))
                low, high = sorted((start[1], end[1]))
                assert right < box.x0 or left > box.x1 or high < box.y0 or low > box.y1, (edge, name, start, end)


def test_the_pictures_show_once_as_images_in_a_fresh_kernel():
    """Before any other plot: a bare matplotlib Figure would show only as its text repr in Jupyter."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(notebook_code()),
        nbformat.v4.new_code_cell("show_graph('counts')"),
        nbformat.v4.new_code_cell("from IPython.display import display\ndisplay(draw_progress({'probs': 'done'}))"),
    ])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    for cell in nb.cells[1:]:
        images = [out for out in cell.outputs if "image/png" in out.get("data", {})]
        assert len(images) == 1, [(out.output_type, list(out.get("data", {}))) for out in cell.outputs]
        width, height = png_size(base64.b64decode(images[0]["data"]["image/png"]))
        assert width <= SCREEN[0] and height <= SCREEN[1], (width, height)
