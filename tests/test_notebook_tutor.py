"""backprop_ninja/notebook_tutor.py imported as a module, with the data tutor.py builds, and inlined in the release."""
from __future__ import annotations

import ast

import matplotlib
import nbformat
import pytest

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from backprop_ninja import notebook_tutor, tutor  # noqa: E402
from backprop_ninja.assign import REPO, TUTOR_CELL, notebook_path  # noqa: E402
from backprop_ninja.inline import module_body  # noqa: E402
from backprop_ninja.units import EXERCISE_1  # noqa: E402


@pytest.fixture
def tutor_module(monkeypatch, tmp_path):
    """The module with the data of a hinted release and no hint asked yet, run from a folder with no solutions."""
    monkeypatch.delenv("BACKPROP_NINJA_SOLUTIONS", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(notebook_tutor, "_TUTOR", tutor.tutor_data(), raising=False)
    monkeypatch.setattr(notebook_tutor, "_tutor_calls", {})
    return notebook_tutor


def test_the_ladder_climbs_per_name_and_the_third_rung_says_where_the_answer_is(tutor_module, capsys):
    counts = next(u for u in EXERCISE_1 if u.var == "counts")
    tutor_module.hint("dcounts")
    first = capsys.readouterr().out
    assert first.startswith("Hint 1 of 3 for dcounts")
    for consumer in counts.consumers:  # every line that uses counts is named on the first rung
        assert f"    {consumer} = " in first
    tutor_module.hint("probs")
    assert capsys.readouterr().out.startswith("Hint 1 of 3 for dprobs")  # each name counts its own calls
    tutor_module.hint("counts")
    assert capsys.readouterr().out.startswith("Hint 2 of 3 for dcounts")
    tutor_module.hint("counts")
    third = capsys.readouterr().out
    assert third.startswith("Hint 3 of 3 for dcounts")
    assert "I did not find it" in third  # no solutions notebook anywhere above tmp_path
    assert tutor_module._tutor_calls == {"ex1_counts": 3, "ex1_probs": 1}


def test_without_hints_the_module_only_says_so_and_counts_nothing(tutor_module, monkeypatch, capsys):
    monkeypatch.setattr(tutor_module, "_TUTOR", tutor.tutor_data(with_hints=False))
    for name in ("counts", "ex2", "no such name"):
        assert tutor_module.hint(name) is None
        assert capsys.readouterr().out.startswith("Hints are turned off for this course.")
    assert tutor_module._tutor_calls == {}
    assert isinstance(tutor_module.show_graph("counts"), Figure)  # the graph still works


def test_show_graph_and_draw_progress_mark_the_nodes_they_are_asked_about(tutor_module, capsys):
    figure = tutor_module.show_graph("dcounts")
    gids = {artist.get_gid() for artist in figure.findobj() if artist.get_gid()}
    assert "node:counts:chosen" in gids
    assert {f"node:{c}:consumer" for c in next(u for u in EXERCISE_1 if u.var == "counts").consumers} <= gids
    progress = tutor_module.draw_progress({"probs": "done", "dcounts": "wrong", "nonsense": "done"})
    titles = [text.get_text() for text in progress.findobj(matplotlib.text.Text)]
    assert f"Exercise 1: 1 of {len(EXERCISE_1)} gradients done" in titles
    assert tutor_module.draw_progress(["probs"]) is not None  # not a dict: said, and drawn all "todo"
    assert "draw_progress expects a dict" in capsys.readouterr().out


def test_the_module_binds_no_data_of_its_own():
    """Inlined after the cell's literal, an assignment to _TUTOR here would replace the data with it."""
    tree = ast.parse(module_body(notebook_tutor))
    bound = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets}
    assert "_TUTOR" not in bound
    assert not [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_the_release_tutor_cell_carries_the_module_verbatim():
    cells = nbformat.read(notebook_path(REPO, "release"), as_version=4).cells
    source = next(cell.source for cell in cells if cell.get("id") == TUTOR_CELL)
    body = module_body(notebook_tutor)
    assert len(body.splitlines()) > 300 and "def hint(" in body
    assert source.endswith(body)
    data = next(node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                and [target.id for target in node.targets] == ["_TUTOR"])
    assert ast.literal_eval(data.value)["graph"] == tutor.graph()
