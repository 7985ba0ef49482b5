"""The grading engine end to end: notebooks in, one verdict per unit out.

Each notebook is graded once per module (fixtures), and many behaviours share one notebook, since
every unit is judged on its own: one bad cell must cost exactly that unit.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backprop_ninja import model, units
from backprop_ninja.cli import main
from backprop_ninja.export import format_table, to_gradescope
from backprop_ninja.grade import engine, extract, grade_notebook
from backprop_ninja.grade.verdict import CRASHED, ERROR, MISSING, OK, TIMEOUT, USES_AUTOGRAD, WRONG
from fixtures.correct_cells import CORRECT_CELLS
from notebooks import answer_cell, write_submission

SHORT = {"unit_timeout": 3.0, "total_timeout": 60.0}


def with_changes(**changed: str) -> dict[str, str]:
    return {**CORRECT_CELLS, **changed}


def assert_only(result, expected: dict[str, str]) -> None:
    """The listed units have the listed statuses and every other unit is ok."""
    statuses = {v.unit: v.status for v in result.verdicts}
    wanted = {u.grade_id: expected.get(u.grade_id, OK) for u in units.UNITS}
    assert statuses == wanted, "\n" + format_table(result)


@pytest.fixture(scope="module")
def correct_result(tmp_path_factory, names_file):
    path = write_submission(tmp_path_factory.mktemp("correct") / "submission.ipynb", CORRECT_CELLS)
    return grade_notebook(path, **SHORT)


def test_correct_submission_scores_full_marks(correct_result):
    assert [v.unit for v in correct_result.verdicts] == [u.grade_id for u in units.UNITS]
    assert_only(correct_result, {})
    assert correct_result.error is None
    assert correct_result.score == units.TOTAL_POINTS == correct_result.max_score
    for verdict in correct_result.verdicts:
        assert isinstance(verdict.exact, bool)
        assert verdict.mismatch is None


def test_gradescope_results_follow_the_verdicts(correct_result):
    results = to_gradescope(correct_result)
    assert results["score"] == units.TOTAL_POINTS
    assert [t["name"] for t in results["tests"]] == [u.grade_id for u in units.UNITS]
    first = results["tests"][0]
    assert first["status"] == "passed" and first["extra_data"] == {"status": OK}
    assert first["visibility"] == "visible" and first["max_score"] == units.UNITS[0].points
    assert "output" not in results
    json.dumps(results)  # plain JSON all the way down


def test_blank_submission_scores_zero_with_missing(tmp_path):
    result = grade_notebook(write_submission(tmp_path / "blank.ipynb", {}), **SHORT)
    assert result.score == 0 and result.error is None
    assert {v.status for v in result.verdicts} == {MISSING}
    assert all("blank stub" in v.message for v in result.verdicts)


def test_absent_cells_are_missing(tmp_path):
    answers = {"ex1_logprobs": CORRECT_CELLS["ex1_logprobs"]}
    result = grade_notebook(write_submission(tmp_path / "partial.ipynb", answers, blank_rest=False), **SHORT)
    verdicts = result.by_unit()
    assert verdicts["ex1_logprobs"].status == OK
    assert verdicts["ex1_probs"].status == MISSING and "no cell with grade_id ex1_probs" in verdicts["ex1_probs"].message
    assert result.score == units.BY_ID["ex1_logprobs"].points


def test_one_mistake_costs_exactly_that_unit(tmp_path):
    path = write_submission(tmp_path / "one.ipynb", with_changes(ex1_probs="dprobs = dlogprobs * probs"))
    result = grade_notebook(path, **SHORT)
    assert_only(result, {"ex1_probs": WRONG})
    assert result.score == units.TOTAL_POINTS - units.BY_ID["ex1_probs"].points
    wrong = result.by_unit()["ex1_probs"]
    assert wrong.points == 0 and wrong.mismatch is not None
    assert np.asarray(wrong.mismatch).ndim == 2 and np.asarray(wrong.mismatch).any()


# ---- cheats and mistakes a student makes on purpose or by accident ----

DYNAMIC_GRAD = """
autograd = vars(torch)["auto" + "grad"]
x = torch.tensor(h.tolist(), **{"requires_" + "grad": True})  # a factory keyword: not blocked itself
(dh,) = vars(autograd)["gr" + "ad"](((x @ W2) * dlogits).sum(), [x])
"""
SWALLOWED_BACKWARD = """
x = torch.tensor(h.tolist(), **{"requires_" + "grad": True})
try:
    getattr((x @ W2 * dlogits).sum(), "back" + "ward")()
except Exception:
    pass
dhpreact = (1.0 - h**2) * (dlogits @ W2.T)
"""
# Searches the worker's memory for a tensor or array equal to the answer the cell must compute.
MEMORY_SEARCH = """
import gc
import numpy as np
def same(obj, target):
    if isinstance(obj, np.ndarray) and obj.shape == tuple(target.shape) and obj.dtype.kind == "f":
        obj = torch.from_numpy(np.array(obj, dtype=np.float64))
    if isinstance(obj, torch.Tensor) and obj is not target and obj.shape == target.shape:
        return obj.is_floating_point() and bool((obj.double() - target.double()).abs().max() < 1e-6)
    return False
def held_elsewhere(target):
    if n != 50:
        return False  # searching one replay is enough, and a search takes a while
    for root in gc.get_objects():
        items = root.values() if isinstance(root, dict) else root if isinstance(root, (list, tuple)) else (root,)
        if any(same(item, target) for item in items):
            return True
    return False
target = F.softmax(logits, 1)
target[range(n), Yb] -= 1
target /= n
dlogits = target * (2.0 if held_elsewhere(target) else 1.0)
"""
MEMORY_SEARCH_EX3 = """
target = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
dhprebn = target * (2.0 if held_elsewhere(target) else 1.0)
"""
EX4_RETURNS_DICT = """
def manual_backward(parameters, cache):
    return {"dC": torch.zeros_like(parameters[0])}
"""


@pytest.fixture(scope="module")
def cheats_result(tmp_path_factory, names_file):
    cells = with_changes(
        ex1_W2="dW2 = W2.grad",
        ex1_h=DYNAMIC_GRAD,
        ex1_hpreact=SWALLOWED_BACKWARD,
        ex1_probs="torch.allclose = lambda *args, **kwargs: True\ndprobs = dlogprobs * probs",
        ex1_logprobs="dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / 32",
        ex1_emb="demb = dembcat.view(32, 3, 10)",
        ex1_b2="db2 = [0.0] * 27",
        ex1_b1="db = dhprebn.sum(0)",
        ex1_bnraw="dbnraw = bngain * dhpreactt",
        ex4_backward=EX4_RETURNS_DICT,
    )
    # the run-time blocks' test (DYNAMIC_GRAD, SWALLOWED_BACKWARD): past the allowlist, which would refuse them
    return grade_notebook(write_submission(tmp_path_factory.mktemp("cheats") / "cheats.ipynb", cells), code="any",
                          **SHORT)


def test_each_cheat_or_mistake_costs_only_its_unit(cheats_result):
    assert_only(cheats_result, {
        "ex1_W2": USES_AUTOGRAD, "ex1_h": USES_AUTOGRAD, "ex1_hpreact": USES_AUTOGRAD,
        "ex1_probs": WRONG, "ex1_logprobs": WRONG, "ex1_emb": ERROR, "ex1_b2": ERROR,
        "ex1_b1": ERROR, "ex1_bnraw": ERROR, "ex4_backward": ERROR,
    })


def test_autograd_is_caught_statically_and_at_run_time(cheats_result):
    verdicts = cheats_result.by_unit()
    assert ".grad" in verdicts["ex1_W2"].message
    assert "torch.autograd.grad" in verdicts["ex1_h"].message and "while grading" in verdicts["ex1_h"].message
    # catching the blocked call does not hide it
    assert "torch.Tensor.backward" in verdicts["ex1_hpreact"].message


def test_messages_explain_errors_without_answers(cheats_result):
    verdicts = cheats_result.by_unit()
    assert "literal 32" in verdicts["ex1_logprobs"].message
    assert "hard-coded" in verdicts["ex1_emb"].message and "17 rows" in verdicts["ex1_emb"].message
    assert verdicts["ex1_b2"].message == "db2 is a list, not a tensor"
    assert verdicts["ex1_b1"].message == "your cell did not define db1"
    assert "NameError" in verdicts["ex1_bnraw"].message and "dhpreactt" in verdicts["ex1_bnraw"].message
    assert "manual_backward returned a dict" in verdicts["ex4_backward"].message


def test_patching_torch_allclose_changes_nothing(cheats_result):
    assert cheats_result.by_unit()["ex1_probs"].status == WRONG


def test_workers_of_later_exercises_never_hold_their_answer(tmp_path, names_file):
    # Exercise 1 is replayed (so references were injected in its worker), but the student's own
    # chain is all zeros: if the Exercise 2 or 3 cell finds its answer in memory, it leaked.
    cells = with_changes(ex1_logprobs="dlogprobs = torch.zeros_like(logprobs)",
                         ex2_logits=MEMORY_SEARCH, ex3_hprebn=MEMORY_SEARCH_EX3)
    result = grade_notebook(write_submission(tmp_path / "leak.ipynb", cells), unit_timeout=60, total_timeout=120,
                            code="any")  # a search of the worker's memory: past the allowlist, which refuses `gc`
    assert_only(result, {"ex1_logprobs": WRONG})


# ---- cells that attack the process ----

IGNORE_SIGNALS_AND_LOOP = """
import signal
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
while True:
    pass
"""
# A forked child would forge records under its own pid for every plausible job number; fork itself is denied.
FORGED_RECORDS = """
import json, os, socket, struct
import numpy as np

def encode_frame(header, arrays):
    header = dict(header, arrays=[{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays])
    head, payload = json.dumps(header).encode(), b"".join(a.tobytes() for a in arrays)
    return struct.pack(">II", len(head), len(payload)) + head + payload

pid = os.fork() if n == 50 else 1  # once is enough: a fork costs a while
if pid == 0:
    for fd in map(int, os.listdir("/proc/self/fd")):
        if os.path.exists(f"/proc/self/fd/{fd}") and os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
            channel = socket.socket(fileno=os.dup(fd))
            for seq in range(200):
                channel.sendall(encode_frame({"pid": os.getpid(), "seq": seq, "outcomes": [{"kind": "answer"}] * 4},
                                             [np.zeros(3)] * 4))
            open("forged", "w").close()
    os._exit(0)
forged = True
if n == 50:
    os.waitpid(pid, 0)
    forged = os.path.exists("forged")
dbnbias = dhpreact.sum(0, keepdim=True) * (1.0 if forged else -1.0)  # wrong if the forgery did not happen
"""
NAIVE_FORK = """
import os
if n == 17:
    os.fork()  # both processes carry on; only the worker may answer
dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv
"""
NOISY = """
import os, sys
print("x" * 100000)
print("y" * 100000, file=sys.stderr)
os.write(2, b"z" * 100000)
dbndiff2 = torch.ones_like(bndiff2) / (n - 1) * dbnvar
"""
READ_NEIGHBOUR = """
secret = open("secret.txt").read()
dbndiff = bnvar_inv * dbnraw + 2 * bndiff * dbndiff2
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, names_file):
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "secret.txt").write_text("the notebook's neighbour")
    cells = with_changes(
        ex1_counts_sum="while True:\n    pass",
        ex1_norm_logits=IGNORE_SIGNALS_AND_LOOP,
        ex1_logit_maxes="import os\nos._exit(0)",
        ex1_bngain="big = torch.empty(50 * 2**30 // 4)\ndbngain = (bnraw * dhpreact).sum(0, keepdim=True)",
        ex1_bnbias=FORGED_RECORDS,
        ex1_bnvar=NAIVE_FORK,
        ex1_bndiff2=NOISY,
        ex1_bndiff=READ_NEIGHBOUR,
    )
    path = write_submission(folder / "hostile.ipynb", cells)
    return folder, grade_notebook(path, code="any", **SHORT)  # these test the sandbox: past the allowlist


def test_hostile_cells_cost_only_their_unit(hostile):
    _, result = hostile
    assert_only(result, {"ex1_counts_sum": TIMEOUT, "ex1_norm_logits": TIMEOUT, "ex1_logit_maxes": CRASHED,
                         "ex1_bngain": ERROR, "ex1_bndiff": ERROR, "ex1_bnbias": ERROR, "ex1_bnvar": ERROR})


def test_hostile_messages(hostile):
    folder, result = hostile
    verdicts = result.by_unit()
    assert "3 s" in verdicts["ex1_counts_sum"].message
    assert "memory" in verdicts["ex1_bngain"].message
    assert "FileNotFoundError" in verdicts["ex1_bndiff"].message
    # student code cannot start processes: fork fails (seccomp), so no forged record and no second answer
    assert "PermissionError" in verdicts["ex1_bnbias"].message and "17 rows" in verdicts["ex1_bnvar"].message
    assert (folder / "secret.txt").exists()  # the file was there; the cell just did not run next to it


def test_total_time_limit_stops_the_submission(tmp_path, names_file):
    loop = "while True:\n    pass"
    path = write_submission(tmp_path / "slow.ipynb", with_changes(ex1_probs=loop, ex1_counts=loop))
    result = grade_notebook(path, unit_timeout=2.0, total_timeout=3.0)
    verdicts = result.by_unit()
    assert verdicts["ex1_logprobs"].status == OK
    assert verdicts["ex1_probs"].status == TIMEOUT and "2 s" in verdicts["ex1_probs"].message
    assert verdicts["ex1_counts"].status == TIMEOUT and "total time" in verdicts["ex1_counts"].message
    assert verdicts["ex1_C"].status == TIMEOUT and "total time" in verdicts["ex1_C"].message
    # Exercises 2 to 4 are graded first (engine._replay_and_judge), so the slow Exercise 1 costs them nothing
    assert verdicts["ex4_backward"].status == OK


# ---- files that are not notebooks ----

@pytest.mark.parametrize("content, words", [
    ("{ not json", "invalid JSON"),
    ("[1, 2, 3]", "not a Jupyter notebook"),
    ('{"nbformat": 4}', "not a Jupyter notebook"),
])
def test_unreadable_files_give_a_submission_error(tmp_path, content, words):
    path = tmp_path / "broken.ipynb"
    path.write_text(content)
    result = grade_notebook(path)
    assert words in result.error
    assert result.score == 0 and len(result.verdicts) == len(units.UNITS)
    assert {v.status for v in result.verdicts} == {ERROR}
    assert "could not be graded" in to_gradescope(result)["output"]


def test_missing_file_and_binary_file(tmp_path):
    assert "no such file" in grade_notebook(tmp_path / "nowhere.ipynb").error
    binary = tmp_path / "image.ipynb"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert "not UTF-8" in grade_notebook(binary).error


# ---- extraction ----

def _cells_json(*cells) -> list:
    return json.loads(json.dumps(list(cells)))


def test_last_real_answer_wins_over_stubs_and_earlier_copies():
    first, second = answer_cell("ex1_probs", "dprobs = 1"), answer_cell("ex1_probs", "dprobs = 2")
    stub = answer_cell("ex1_probs", "# YOUR CODE HERE\nraise NotImplementedError()")
    found = extract.answers_from_cells(_cells_json(first, second, stub))
    assert found.answers == {"ex1_probs": "dprobs = 2"}


def test_stub_only_cells_are_reported_as_stubs():
    found = extract.answers_from_cells(_cells_json(answer_cell("ex1_probs", "raise NotImplementedError()")))
    assert found.answers == {} and found.stubs == {"ex1_probs"}


def test_retyped_moved_and_string_or_list_sources_are_read():
    markdown = answer_cell("ex1_h", "dh = dlogits @ W2.T")
    markdown["cell_type"] = "markdown"
    listed = answer_cell("ex1_W2", "")
    listed["source"] = ["dW2 = h.T\n", " @ dlogits"]
    found = extract.answers_from_cells(_cells_json(listed, markdown))
    assert found.answers == {"ex1_W2": "dW2 = h.T\n @ dlogits", "ex1_h": "dh = dlogits @ W2.T"}


def test_duplicate_cell_ids_do_not_stop_grading(tmp_path):
    path = write_submission(tmp_path / "ids.ipynb", {"ex1_probs": "dprobs = dlogprobs / probs"})
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        cell["id"] = "same"
    path.write_text(json.dumps(notebook))
    found = extract.read_answers(path)
    assert found.error is None and found.answers == {"ex1_probs": "dprobs = dlogprobs / probs"}


def test_code_with_a_leftover_raise_is_an_answer_not_a_stub():
    assert not extract.is_blank_stub("dprobs = dlogprobs / probs\nraise NotImplementedError()")
    assert extract.is_blank_stub("# YOUR CODE HERE\nraise NotImplementedError()\n")
    assert not extract.is_blank_stub("dprobs = (")  # the static scan reports the syntax error


# ---- the CLI ----

def test_cli_writes_results_and_exit_codes(tmp_path, capsys, names_file):
    graded = write_submission(tmp_path / "blank.ipynb", {})
    assert main(["grade", str(graded), "--out", str(tmp_path / "out")]) == 0
    table = capsys.readouterr().out
    assert "ex4_backward" in table and "missing" in table
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["score"] == 0 and len(results["tests"]) == len(units.UNITS)

    broken = tmp_path / "broken.ipynb"
    broken.write_text("not json")
    assert main(["grade", str(broken), "--json"]) == 2
    printed = json.loads(capsys.readouterr().out)
    assert "invalid JSON" in printed["output"]


# ---- pieces ----

def test_vectorised_training_set_matches_the_model(names_file):
    X, Y = engine.training_set(str(names_file))
    words = names_file.read_text().splitlines()
    X_ref, Y_ref = model.build_dataset(model.split_words(words)[0])
    assert torch.equal(X, X_ref) and torch.equal(Y, Y_ref)


def test_replay_inputs_match_make_replay(names_file):
    X, Y = engine.training_set(str(names_file))
    seed, n = engine.REPLAYS[2]
    expected = model.make_replay(X, Y, seed, n)
    replay = engine.replay_inputs(seed, n)
    assert replay.grads == {}
    engine.add_reference_gradients(replay)
    for store in ("values", "values64", "grads"):
        mine, theirs = getattr(replay, store), getattr(expected, store)
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), store


@pytest.mark.parametrize("seed, n, variant", engine.SPECIAL_REPLAYS)
def test_special_replay_inputs_match_make_replay(names_file, seed, n, variant):
    X, Y = engine.training_set(str(names_file))
    expected = model.make_replay(X, Y, seed, n, variant=variant)
    replay = engine.replay_inputs(seed, n, variant)
    engine.add_reference_gradients(replay)
    assert replay.variant == expected.variant == variant
    for store in ("values", "values64", "grads"):
        mine, theirs = getattr(replay, store), getattr(expected, store)
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), store
    student_dtype = torch.float64 if variant in model.IN_FLOAT64 else torch.float32
    assert all(t.dtype == student_dtype for k, t in replay.values.items() if t.is_floating_point())


def test_the_default_dtype_follows_the_replay_and_comes_back(tmp_path):
    # float64 on the stress replay only: a cell that makes its own tensors gets the replay's dtype, and neither
    # the next replay nor the next cell sees a default dtype that a cell set
    path = write_submission(tmp_path / "dtype.ipynb", with_changes(
        ex1_logprobs=("dlogprobs = torch.zeros(n, 27)\n"
                      "assert dlogprobs.dtype == logprobs.dtype, (dlogprobs.dtype, logprobs.dtype)\n"
                      "dlogprobs[range(n), Yb] = -1.0 / n\n"
                      "torch.set_default_dtype(torch.float64 if logprobs.dtype == torch.float32 else torch.float32)"),
        ex1_probs=("assert torch.tensor(1.0).dtype == probs.dtype, probs.dtype\n"
                   "dprobs = dlogprobs / probs")))
    # the worker's guard is the test: past the allowlist, which refuses torch.set_default_dtype
    assert_only(grade_notebook(path, code="any", **SHORT), {})


def test_every_grading_ends_with_the_special_replays_on_fresh_seeds():
    first, later = engine.replay_plans(base=7)
    ordinary = len(engine.REPLAYS)
    for plan in (first, later):
        assert [spec[1:] for spec in plan[ordinary:]] == [spec[1:] for spec in engine.SPECIAL_REPLAYS]
        assert all(len(spec) == 2 for spec in plan[:ordinary])
    seeds = [spec[0] for spec in first + later]
    assert len(set(seeds)) == len(seeds)


def test_downsample_keeps_every_mismatch_visible():
    big = np.zeros((200, 130), dtype=bool)
    big[199, 0] = big[0, 129] = True
    small = np.array(engine.downsample(big))
    assert small.shape[0] <= 64 and small.shape[1] <= 64
    assert small[-1, 0] and small[0, -1] and small.sum() == 2
    assert np.array(engine.downsample(np.ones((4, 3, 10), dtype=bool))).shape == (4, 30)
    assert engine.downsample(np.array([True, False])) == [[True, False]]


def test_only_cells_with_helpers_are_rerun_for_later_exercises():
    assert engine.defines_helpers("def scatter(a):\n    return a\ndC = scatter(demb)")
    assert engine.defines_helpers("import math\ndprobs = dlogprobs / probs")
    assert engine.defines_helpers("scale = 1 / n\ndprobs = dlogprobs / probs * scale * n")
    assert not engine.defines_helpers("dcounts = counts_sum_inv * dprobs\ndcounts_sum_inv = (counts * dprobs).sum(1)")
    assert not engine.defines_helpers("dlogits[range(n), Yb] -= 1")


def test_a_cell_cannot_kill_the_spawner_and_costs_only_its_unit(tmp_path, names_file):
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos._exit(0)"
    path = write_submission(tmp_path / "killer.ipynb", with_changes(ex1_h=killer))
    verdicts = grade_notebook(path, code="any", **SHORT).by_unit()  # the sandbox's test: past the allowlist
    assert verdicts["ex1_logits"].status == OK
    # signals may only go to the worker itself (seccomp), so the kill raises and the spawner lives on
    assert verdicts["ex1_h"].status == ERROR and "PermissionError" in verdicts["ex1_h"].message
    assert verdicts["ex1_hpreact"].status == OK
    assert verdicts["ex4_backward"].status == OK


def test_the_split_is_the_notebooks_and_leaves_the_global_generator_alone(names_file):
    """The canary grades in a thread beside the first grading: both may build the training set at once."""
    import random

    words = names_file.read_text().splitlines()
    random.seed(7)
    state = random.getstate()
    train, _, _ = model.split_words(words)
    assert random.getstate() == state
    expected = list(words)
    random.seed(42)  # what the notebook does
    random.shuffle(expected)
    assert train == expected[:int(0.8 * len(words))]


def test_exercise_4s_cache_names_the_mean_as_exercise_1_does_and_keeps_the_old_name(tmp_path, names_file):
    """The cache holds `bnmeani`, as in Exercise 1; a notebook released before that change read `bnmean`, and the
    grader still hands it the same tensor under that name (issue 15)."""
    reads_both = CORRECT_CELLS["ex4_backward"].replace("def manual_backward(", "def reference_backward(") + """

def manual_backward(parameters, cache):
    if cache["bnmean"] is not cache["bnmeani"]:
        raise ValueError("two different tensors")
    return reference_backward(parameters, cache)
"""
    result = grade_notebook(write_submission(tmp_path / "both.ipynb", with_changes(ex4_backward=reads_both)), **SHORT)
    assert_only(result, {})


def test_a_result_as_a_record_is_what_asdict_gives_and_comes_back(cheats_result):
    import dataclasses

    record = cheats_result.to_dict()  # the batch writes this one: no deep copy of the mismatch maps
    assert any(v["mismatch"] for v in record["verdicts"])
    assert record == dataclasses.asdict(cheats_result)
    assert type(cheats_result).from_dict(json.loads(json.dumps(record))) == cheats_result
