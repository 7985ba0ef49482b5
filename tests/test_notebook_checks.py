"""The notebook's own helpers, as a student meets them: check(), progress(), the data cell and the training schedule.

Most tests run the notebook's locked cells (from the text source) in a plain namespace, which is quick; two start a
real Jupyter kernel, because what a student sees there (the error output, whether Run All stops) is IPython's doing.
"""
from __future__ import annotations

import inspect
import re
import sys
import textwrap
import urllib.request

import jupytext
import matplotlib
import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from backprop_ninja import assign, notebook_diagnoses, units
from backprop_ninja.grade import compare, probe, static

matplotlib.use("Agg")


def _source_cells() -> dict[str, str]:
    """grade_id -> source of the text source's cells; the one plain cell (the number of training steps, which
    students may edit, so nbgrader must not know it) is "train_steps"."""
    nb = jupytext.read(assign.text_source(assign.REPO), fmt="py:percent")
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    (steps,) = [c.source for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata]
    assert steps.startswith("max_steps = ")
    # the generated cells hold a placeholder in the text source: give them what `assign` writes into them
    return {**cells, "train_steps": steps, notebook_diagnoses.CELL: notebook_diagnoses.notebook_code()}


CELLS = _source_cells()


def _run(namespace: dict, *grade_ids: str) -> dict:
    for grade_id in grade_ids:
        exec(compile(CELLS[grade_id], grade_id, "exec"), namespace)
    return namespace


@pytest.fixture
def helpers(monkeypatch):
    """A namespace with the imports and helpers cells run, as a student's notebook has them (not under nbgrader)."""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    return _run({}, "imports", "helpers", "diagnoses")


def _with_gradient(namespace: dict) -> torch.Tensor:
    """Give the namespace a leaf tensor `x` whose autograd gradient is 2x, as the forward pass gives `probs`."""
    x = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    (x**2).sum().backward()
    namespace["x"] = x
    return x


def test_check_prints_one_line_for_a_right_answer(helpers, capsys):
    x = _with_gradient(helpers)
    helpers["dx"] = 2 * x.detach()
    helpers["check"]("x")
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{'dx':15s} | exact: True  | approximate: True  | maxdiff: 0.00e+00"]


def test_a_wrong_answer_raises_one_line_that_names_the_gradient(helpers, capsys):
    x = _with_gradient(helpers)
    helpers["dx"] = 3 * x.detach()
    with pytest.raises(AssertionError) as caught:
        helpers["check"]("x")
    error = caught.value
    assert type(error).__name__ == "CheckFailed"
    rendered = error._render_traceback_()  # what IPython shows instead of a traceback
    assert len(rendered) == 1 and "\n" not in rendered[0]
    assert rendered[0].startswith("CheckFailed: dx does not match autograd yet (maxdiff: ")
    assert "approximate: False" in capsys.readouterr().out


def test_an_undefined_answer_says_which_cell_to_fill_in(helpers):
    _with_gradient(helpers)
    with pytest.raises(AssertionError) as caught:
        helpers["check"]("x")
    (line,) = caught.value._render_traceback_()
    assert "dx is not defined yet" in line and "raise NotImplementedError()" in line


@pytest.mark.parametrize("answer", ["x.grad", "x.grad.view(3)", "x.grad.detach()", "x.grad[:]"])
def test_autograds_own_gradient_is_flagged_not_passed(helpers, answer, capsys):
    _with_gradient(helpers)
    helpers["dx"] = eval(answer, helpers)
    with pytest.raises(AssertionError) as caught:
        helpers["check"]("x")
    assert caught.value._render_traceback_() == [
        "CheckFailed: dx is autograd's own answer (x.grad); derive it by hand."]
    out = capsys.readouterr().out
    assert "autograd's own answer" in out and "exact: True" not in out


def test_a_retained_intermediate_gradient_is_flagged_too(helpers):
    x = _with_gradient(helpers)
    y = x * 3
    y.retain_grad()
    y.sum().backward()
    helpers["y"], helpers["dy"] = y, y.grad
    status, detail = helpers["_compare"]("y")
    assert (status, detail) == ("wrong", "is autograd's own answer (y.grad); derive it by hand")


def test_exact_false_is_explained_once(helpers, capsys):
    x = _with_gradient(helpers)
    helpers["dx"] = 2 * x.detach() + 1e-7  # right, but not bit for bit
    helpers["check"]("x")
    helpers["check"]("x")
    out = capsys.readouterr().out
    assert out.count("exact: False | approximate: True") == 2
    assert out.count("approximate: True is what counts") == 1


def test_progress_uses_one_form_per_status(helpers, capsys):
    helpers["logprobs"] = _with_gradient(helpers)
    helpers["dlogprobs"] = 2 * helpers["logprobs"].detach()
    helpers["probs"] = helpers["logprobs"]
    helpers["dprobs"] = [1, 2, 3]
    helpers["progress"]()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("done     dlogprobs       | exact: True")
    assert lines[1] == "wrong    dprobs          | is a list, but it should be a tensor"
    assert lines[2] == "not yet  dcounts_sum_inv | is not defined yet"
    assert lines[-1] == "done: 1, wrong: 1, not yet: 24"


@pytest.mark.parametrize("execution, raises", [("autograde", False), ("validate", True), ("", True)])
def test_only_autograde_makes_checks_print_instead_of_stopping(monkeypatch, execution, raises):
    monkeypatch.setenv("NBGRADER_EXECUTION", execution)
    namespace = _run({}, "imports", "helpers", "diagnoses")
    x = _with_gradient(namespace)
    namespace["dx"] = 3 * x.detach()
    if raises:
        with pytest.raises(AssertionError):
            namespace["check"]("x")
    else:
        namespace["check"]("x")
    assert namespace["UNDER_NBGRADER"] is bool(execution)


def test_progress_bar_falls_back_to_plain_text_without_ipywidgets(monkeypatch):
    import tqdm.auto
    import tqdm.std

    assert _run({}, "imports")["tqdm"] is tqdm.auto.tqdm
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now raises ImportError
    assert _run({}, "imports")["tqdm"] is tqdm.std.tqdm  # plain text, and no "IProgress not found" warning


def test_missing_data_names_the_working_folder_the_variable_and_the_address(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BACKPROP_NINJA_NAMES", raising=False)

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError) as caught:
        _run({}, "imports", "data")
    message = str(caught.value)
    assert f"names.txt is not in the working folder ({tmp_path}; /content on Colab)" in message
    assert "BACKPROP_NINJA_NAMES is not set" in message and "set BACKPROP_NINJA_NAMES to its path" in message
    assert "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt" in message
    assert "no network" in message

    monkeypatch.setenv("BACKPROP_NINJA_NAMES", str(tmp_path / "nowhere.txt"))
    with pytest.raises(RuntimeError, match="BACKPROP_NINJA_NAMES is set to '.*nowhere.txt', which is not a file"):
        _run({}, "imports", "data")


def _training_namespace(monkeypatch, execution: str) -> dict:
    """Everything the training cell needs, with a tiny fake training set and the solution's manual_backward."""
    if execution:
        monkeypatch.setenv("NBGRADER_EXECUTION", execution)
    else:
        monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    namespace = _run({}, "imports", "helpers", "diagnoses")
    namespace.update(n_embd=10, block_size=3, vocab_size=27, batch_size=32)
    namespace["Xtr"] = torch.randint(0, 27, (500, 3), generator=torch.Generator().manual_seed(0))
    namespace["Ytr"] = torch.randint(0, 27, (500,), generator=torch.Generator().manual_seed(1))
    _run(namespace, "ex4_forward")
    exec(assign.solution_cells()["ex4_backward"], namespace)
    return namespace


def test_the_number_of_steps_is_a_plain_variable(monkeypatch):
    monkeypatch.delenv("BACKPROP_NINJA_STEPS", raising=False)
    namespace = _run(_training_namespace(monkeypatch, ""), "train_steps")
    assert namespace["max_steps"] == 200_000  # the full schedule by default
    monkeypatch.setenv("BACKPROP_NINJA_STEPS", "300")
    assert _run(namespace, "train_steps")["max_steps"] == 300  # the environment variable still works

    namespace["max_steps"] = 7  # what a student types into that cell
    _run(namespace, "train")
    assert len(namespace["lossi"]) == 7


@pytest.mark.parametrize("execution", ["validate", "autograde"])
def test_nbgrader_trains_on_its_short_schedule_whatever_the_variable_says(monkeypatch, execution):
    monkeypatch.delenv("BACKPROP_NINJA_STEPS", raising=False)
    namespace = _training_namespace(monkeypatch, execution)
    namespace["max_steps"] = 200_000
    _run(namespace, "train")
    assert len(namespace["lossi"]) == 1000


def _kernel_notebook(*sources: str) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_code_cell(CELLS["imports"]),
             nbformat.v4.new_code_cell(CELLS["helpers"] + "\n" + CELLS["diagnoses"])]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                          "display_name": "Python 3"}})


def _errors(cell) -> list:
    return [out for out in cell.outputs if out.output_type == "error"]


SETUP = "x = torch.tensor([1.0, 2.0], requires_grad=True)\n(x**2).sum().backward()"


def test_in_jupyter_a_failed_check_and_an_unanswered_cell_show_one_line_each(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    nb = _kernel_notebook(SETUP, "# YOUR CODE HERE\nraise NotImplementedError()", 'check("x")',
                          "dx = 3 * x.detach()", 'check("x")', 'raise NotImplementedError("my own message")')
    NotebookClient(nb, timeout=60, allow_errors=True).execute()
    stub, undefined, wrong, own = (_errors(nb.cells[i]) for i in (3, 4, 6, 7))
    assert [e.traceback for e in stub] == [[
        "NotImplementedError: this cell is not answered yet. Replace the line `raise NotImplementedError()` with "
        "your code, run the cell, and then run the cells after it."]]
    assert [e.traceback for e in undefined] == [[
        "CheckFailed: dx is not defined yet: answer its cell above (in place of `raise NotImplementedError()`), "
        "run that cell, then run this one again."]]
    assert len(wrong) == 1 and len(wrong[0].traceback) == 1
    assert wrong[0].traceback[0].startswith("CheckFailed: dx does not match autograd yet")
    # an exception with a message of its own keeps its full traceback
    assert own[0].evalue == "my own message" and len(own[0].traceback) > 1


def test_in_jupyter_a_failed_check_still_stops_run_all(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    for failing in ('dx = 3 * x.detach()\ncheck("x")', "raise NotImplementedError()"):
        nb = _kernel_notebook(SETUP, failing, 'print("after")')
        with pytest.raises(CellExecutionError):
            NotebookClient(nb, timeout=60).execute()
        assert nb.cells[-1].outputs == []  # the cell after it never ran


# --- check() in an IPython session: it finds the answer's cell in what ran, and re-runs it on fresh batches -------

SESSION_SETUP = ("imports", "data", "vocab", "helpers", notebook_diagnoses.CELL, "model", "forward")


@pytest.fixture(scope="module")
def shell(names_file):
    """One IPython shell (what a Jupyter kernel runs cells with) holding the notebook's cells up to the forward
    pass. In-process, so each test can say whether the front end sends cell ids (JupyterLab does, nbclient not)."""
    from IPython.core.interactiveshell import InteractiveShell

    with pytest.MonkeyPatch.context() as patch:  # only while the data cell reads the names
        patch.setenv("BACKPROP_NINJA_NAMES", str(names_file))
        patch.delenv("NBGRADER_EXECUTION", raising=False)
        ipython = InteractiveShell.instance()
        for grade_id in SESSION_SETUP:
            assert ipython.run_cell(CELLS[grade_id]).success, grade_id
    return ipython


@pytest.fixture
def session(shell, capsys, monkeypatch):
    """Run a cell as Jupyter would: run(source, cell_id=None) -> (one-line error or None, what it printed)."""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)  # checks stop, as in a student's notebook
    shell.run_cell("_CELLS.clear()")
    shell.user_ns.update({k: None for k in list(shell.user_ns) if k.startswith("d") and k[1:] in shell.user_ns})
    assert shell.run_cell(CELLS["forward"]).success
    capsys.readouterr()

    def run(source, cell_id=None):
        result = shell.run_cell(source, cell_id=cell_id)
        error = result.error_in_exec or result.error_before_exec
        return (None if error is None else f"{type(error).__name__}: {error}"), capsys.readouterr().out

    return run


SOLUTIONS = assign.solution_cells()


def _answer(session, *variables):
    """Run the solution's answer cells of these Exercise 1 variables, each with its check."""
    for variable in variables:
        error, _ = session(SOLUTIONS[f"ex1_{variable}"])
        assert error is None, (variable, error)
        error, _ = session(f'check("{variable}")')
        assert error is None, (variable, error)


def test_exercise_2_does_not_pass_on_exercise_1s_dlogits(session):
    _answer(session, "logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits", "logit_maxes",
            "logits")
    for cell_id in (None, "ex2_logits"):  # Exercise 2's cell left as it is, with or without cell ids
        error, _ = session("# YOUR CODE HERE\nraise NotImplementedError()", cell_id=cell_id)
        assert error.startswith("NotImplementedError")
        error, _ = session('check("ex2")')
        assert error.startswith("CheckFailed: dlogits is not defined yet in Exercise 2's cell"), error
    error, out = session(SOLUTIONS["ex2_logits"], cell_id="ex2_logits")
    assert error is None
    error, out = session('check("ex2")')
    assert error is None and "approximate: True" in out


def test_exercise_3_takes_only_its_own_cell(session):
    _answer(session, *EX1_UNTIL_HPREACT)
    error, _ = session("dhprebn = torch.zeros_like(hprebn)")  # an Exercise 1 style cell, not Exercise 3's
    error, _ = session('check("hprebn")')
    assert error is not None  # wrong for Exercise 1, and it now belongs to Exercise 1
    error, _ = session('check("ex3")')
    assert error.startswith("CheckFailed: dhprebn is not defined yet in Exercise 3's cell"), error
    error, _ = session(SOLUTIONS["ex3_hprebn"])
    error, out = session('check("ex3")')
    assert error is None, error


EX1_UNTIL_HPREACT = ("logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits", "logit_maxes",
                     "logits", "h", "W2", "b2", "hpreact")


def test_a_literal_batch_size_fails_on_a_fresh_batch(session):
    error, out = session("dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(32), Yb] = -1.0 / 32")
    assert error is None
    error, out = session('check("logprobs")')
    assert "approximate: True" in out  # right on the notebook's own batch of 32
    assert error == ("CheckFailed: dlogprobs is right when the batch has 32 examples but wrong on a fresh batch of "
                     "17: it looks like a literal 32 where the batch size n belongs.")


@pytest.mark.parametrize("answer", ["norm_logits.grad.clone()", "norm_logits.grad * 1.0"])
def test_autograds_tensor_behind_an_operation_is_named(session, answer):
    _answer(session, "logprobs", "probs", "counts_sum_inv", "counts_sum", "counts")
    assert session(f"dnorm_logits = {answer}")[0] is None
    error, _ = session('check("norm_logits")')
    graders = static.scan(f"dnorm_logits = {answer}", units.BY_ID["ex1_norm_logits"])  # the grader's own finding
    assert graders is not None and graders.message.startswith("line 1 reads `.grad`: ")
    assert error == f"CheckFailed: dnorm_logits: {graders.message}."


@pytest.mark.parametrize("check_call, grade_id, cell", [
    ('check("logprobs")', "ex1_logprobs", "from torch.func import vjp\ndlogprobs = torch.zeros_like(logprobs)"),
    ('check("logprobs")', "ex1_logprobs",
     "import torch as my_torch\nmy_autograd = my_torch.autograd\ndlogprobs = torch.zeros_like(logprobs)"),
    ('check("ex2")', "ex2_logits", "dlogits = F.cross_entropy(logits, Yb)"),
])
def test_a_cell_the_grader_scans_as_asking_autograd_fails_its_check_in_the_graders_words(session, check_call,
                                                                                          grade_id, cell):
    graders = static.scan(cell, units.BY_ID[grade_id])
    assert graders is not None and graders.kind == "autograd"
    assert session(cell, cell_id=grade_id)[0] is None
    error, _ = session(check_call)
    assert error == f"CheckFailed: d{units.BY_ID[grade_id].var}: {graders.message}."


def test_running_the_forward_pass_again_keeps_the_batch_and_the_answers(session, shell):
    _answer(session, "logprobs", "probs", "counts_sum_inv")
    batch = shell.user_ns["Xb"].clone()
    assert session(CELLS["forward"])[0] is None
    assert torch.equal(shell.user_ns["Xb"], batch)
    error, out = session('check("counts_sum_inv")')
    assert error is None and "approximate: True" in out


def test_an_answer_from_an_earlier_forward_pass_is_called_stale(session, shell):
    _answer(session, "logprobs", "probs", "counts_sum_inv")
    kept = shell.user_ns["batch_state"]
    try:  # a student who draws another batch on purpose: the answers stay as they were
        assert session("batch_state = torch.Generator().manual_seed(5).get_state()")[0] is None
        assert session(CELLS["forward"])[0] is None
        error, _ = session('check("probs")')
        assert error == ("CheckFailed: dprobs was computed from an earlier forward pass: re-run the cells from "
                         "dlogprobs's on.")
        _answer(session, "logprobs", "probs")  # re-running them from there fixes it
        error, _ = session('check("counts_sum_inv")')
        assert error.endswith("re-run the cells from dcounts_sum_inv's on.")
    finally:
        shell.user_ns["batch_state"] = kept


def test_an_earlier_gradient_changed_in_place_is_named(session):
    _answer(session, *EX1_UNTIL_BNVAR_INV, "bnvar", "bndiff2", "bndiff", "bnmeani")
    # the trap: `=` makes dhprebn the same tensor as dbndiff, so `+=` changes the checked dbndiff too
    assert session("dhprebn = dbndiff\ndhprebn += (1.0 / n) * torch.ones_like(hprebn) * dbnmeani")[0] is None
    error, out = session('check("hprebn")')
    assert error is None  # dhprebn itself is right, and the grader gives it its point
    assert "note: dbndiff changed after its own check passed" in out and "dbndiff.clone()" in out
    error, out = session("progress()")
    assert error is None
    assert [line for line in out.splitlines() if "changed in place" in line][0].split()[1] == "dbndiff"


def test_exercise_1s_chain_pasted_into_exercise_2_breaks_its_rule(session):
    from backprop_ninja.grade import one_go

    chain = "\n".join(SOLUTIONS[f"ex1_{variable}"] for variable in EX1_UNTIL_HPREACT[:8])
    session(chain, cell_id="ex2_logits")
    error, _ = session('check("ex2")')
    unit, rule = units.BY_ID["ex2_logits"], units.one_go_rules()["ex2"]
    graders = one_go.read_problem(chain, "Exercise 2", unit.gives, set(rule["refused"]))
    assert graders and error == f"CheckFailed: dlogits: {graders}."
    error, out = session("dlogits = (F.log_softmax(logits, 1).exp() - F.one_hot(Yb, 27)) / n", cell_id="ex2_logits")
    error, out = session('check("ex2")')
    assert error is None and "approximate: True" in out


def test_an_answer_cell_that_raises_is_named_with_its_error(session):
    _answer(session, *EX1_UNTIL_HPREACT[:8])
    error, _ = session("dh = dlogits @ W2")
    assert error.startswith("RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    error, _ = session('check("h")')
    assert error.startswith("CheckFailed: dh's cell raised RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert "NotImplementedError" not in error and "\n" not in error


def test_an_answer_cell_that_does_not_parse_is_named_as_raising_not_as_unanswered(session):
    error, _ = session("dlogprobs = torch.zeros_like(logprobs\ndlogprobs[range(n), Yb] = -1.0 / n")
    assert error.startswith("SyntaxError")
    error, _ = session('check("logprobs")')
    assert error.startswith("CheckFailed: dlogprobs's cell raised SyntaxError"), error


def test_a_cell_that_raises_only_for_want_of_an_earlier_gradient_passes_as_the_grader_scores_it(session, shell):
    _answer(session, *EX1_UNTIL_HPREACT[:8])
    shell.user_ns.pop("dh", None)
    assert session("dh = dlogits @ W2")[0].startswith("RuntimeError")  # dh is never made
    error, _ = session(SOLUTIONS["ex1_hpreact"])
    assert error.startswith("NameError")  # the right dhpreact cannot run without dh
    error, out = session('check("hpreact")')
    assert error is None and "right, but its cell raised NameError" in out and "earlier gradient" in out
    error, _ = session("dhpreact = 2 * (1.0 - h**2) * dh")  # wrong on its own too: still raises, still fails
    error, _ = session('check("hpreact")')
    assert error.startswith("CheckFailed: dhpreact's cell raised NameError"), error


def test_the_earlier_gradient_sentence_only_when_an_input_is_off(session):
    assert session("dlogprobs = torch.zeros_like(logprobs)")[0] is None  # the first gradient, wrong
    error, _ = session('check("logprobs")')
    assert "builds on" not in error and "earlier gradient" not in error
    assert session("dprobs = (1.0 / probs) * dlogprobs")[0] is None  # right given a right dlogprobs
    error, out = session('check("probs")')
    assert error is None and "right, but dlogprobs is off" in out
    assert session("dprobs = (2.0 / probs) * dlogprobs")[0] is None  # wrong by itself too
    error, _ = session('check("probs")')
    assert error.endswith("dlogprobs, which it builds on, is off too: fix that first."), error
    assert len(error) < 300


def test_exercise_4s_test_cell_calls_one_function():
    assert CELLS["test_ex4_backward"].split("### BEGIN HIDDEN TESTS")[0].strip() == "check_backward()"


def test_an_answer_no_cell_made_is_compared_but_said_not_re_run(session, shell):
    ns = shell.user_ns
    answer = torch.zeros_like(ns["logprobs"])
    answer[range(ns["n"]), ns["Yb"]] = -1.0 / ns["n"]
    ns["dlogprobs"] = answer  # set from outside any cell
    error, out = session('check("logprobs")')
    assert "approximate: True" in out and "so it was not re-run on fresh batches" in out


def test_time_magics_are_re_run_as_the_statement_they_time(session):
    assert session("%time dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n")[0] is None
    error, out = session('check("logprobs")')
    assert error is None and "approximate: True" in out and "not re-run" not in out


# --- the grader's float64 stress replay and its rule probe, in check() -------------------------------------------

EX1_UNTIL_BNVAR_INV = EX1_UNTIL_HPREACT + ("bngain", "bnbias", "bnraw", "bnvar_inv")


def test_a_missing_epsilon_fails_on_the_stress_replay(session):
    _answer(session, *EX1_UNTIL_BNVAR_INV)
    assert session("dbnvar = -0.5 * bnvar**-1.5 * dbnvar_inv")[0] is None  # `+ 1e-5` left out
    error, out = session('check("bnvar")')
    assert "approximate: True" in out  # within float32's tolerance on this batch and on fresh ones
    assert error.startswith("CheckFailed: dbnvar is nearly right, but wrong on the stress replay"), error
    assert "column of tiny variance" in error and "epsilon" in error and "\n" not in error


@pytest.mark.parametrize("answer", ["-0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv",
                                    "(-0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv).float()"])
def test_a_right_dbnvar_passes_the_stress_replay_also_in_float32(session, answer):
    """Run in float64 there, it is held to float64's tolerance; forced to float32, to float32's (as compare.py)."""
    _answer(session, *EX1_UNTIL_BNVAR_INV)
    assert session(f"dbnvar = {answer}")[0] is None
    error, out = session('check("bnvar")')
    assert error is None, error
    assert "approximate: True" in out and "by luck" not in out


@pytest.mark.parametrize("variable, answer, words", [
    ("logits", "dlogits = dnorm_logits.clone()", "the branch through logit_maxes is missing"),
    ("logit_maxes", "dlogit_maxes = torch.zeros_like(logit_maxes)", "dlogit_maxes is written as zeros instead of following its rule"),
])
def test_a_right_by_luck_answer_gets_the_graders_note_not_a_failure(session, variable, answer, words):
    earlier = EX1_UNTIL_HPREACT[:EX1_UNTIL_HPREACT.index(variable)]
    _answer(session, *earlier)
    assert session(answer)[0] is None
    error, out = session(f'check("{variable}")')
    assert error is None, error  # the grader's default policy keeps the points: a note, not a failure
    (note,) = [line for line in out.splitlines() if line.startswith("note:")]
    assert note.startswith(f"note: d{variable} is right here only by luck: {words}; it only works because "
                           f"dlogit_maxes is exactly 0 here: softmax ignores a shift"), note


def test_right_answers_get_neither_the_stress_failure_nor_the_luck_note(session):
    for variable in EX1_VARIABLES:
        assert session(SOLUTIONS[f"ex1_{variable}"])[0] is None
        error, out = session(f'check("{variable}")')
        assert error is None, (variable, error)
        assert "approximate: True" in out and "by luck" not in out, (variable, out)


EX1_VARIABLES = [u.var for u in units.EXERCISE_1]


def test_the_probe_in_the_notebook_is_the_graders_code():
    namespace = _run({}, "imports", "helpers", notebook_diagnoses.CELL)
    for name in probe.NOTEBOOK_CODE:  # each function as it is, one level in (inside _ninja_probe)
        assert textwrap.indent(inspect.getsource(getattr(probe, name)), "    ") in CELLS[notebook_diagnoses.CELL]
        assert callable(getattr(namespace["_probe"], name))
    assert namespace["ATOL_FLOAT64"] == compare.ATOL_FLOAT64
    assert namespace["_probe"].ZERO_BECAUSE == probe.ZERO_BECAUSE


def test_exercise_4s_check_prints_the_columns_the_introduction_promises(session):
    """The introduction says every check prints `exact`, `approximate` and the largest difference (issue 15)."""
    assert "`exact`, `approximate`" in CELLS["intro"]
    for cell in ("ex4_forward", "ex4_backward"):
        error, _ = session(SOLUTIONS.get(cell, CELLS[cell]))
        assert error is None, (cell, error)
    error, out = session("check_backward()")
    assert error is None, error
    rows = [line for line in out.splitlines() if " | " in line]
    assert [row.split("|")[0].strip() for row in rows] == list(units.EX4_RETURNS)
    assert all(re.search(r"\| exact: (?:True |False) \| approximate: True  \| maxdiff: ", row) for row in rows), rows
