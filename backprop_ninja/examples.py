"""The three example submissions shipped in examples/: made from the release by filling its answer cells.

* ada: every answer right, several in a different but equivalent form from the solutions;
* ben: typical mistakes in named units (EXPECTED_LOST says which), everything else right;
* cleo: the blank release, as a student who never started would hand it in.

`python -m backprop_ninja.examples` rewrites examples/; a kit test checks the committed files are up to date.
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from backprop_ninja.assign import ASSIGNMENT, REPO, notebook_path, solution_cells

EXAMPLES = REPO / "examples" / "submitted"

# Correct answers written differently from the solution notebook.
ADA_ANSWERS = {
    "ex1_logprobs": "dlogprobs = -F.one_hot(Yb, num_classes=logprobs.shape[1]).float() / n",
    "ex1_probs": "dprobs = dlogprobs * probs**-1",
    "ex1_counts": "dcounts = counts_sum_inv * dprobs + dcounts_sum  # the (n, 1) column broadcasts over the row",
    "ex1_logits": ("dlogits = dnorm_logits.clone()\n"
                   "# the max branch is (almost) zero, but we add it anyway\n"
                   "dlogits.scatter_add_(1, logits.argmax(1, keepdim=True), dlogit_maxes)"),
    "ex1_bnbias": "dbnbias = dhpreact.sum(0).view(1, -1)",
    "ex1_bndiff2": "dbndiff2 = dbnvar.expand_as(bndiff2) / (n - 1)",
    "ex1_hprebn": "dhprebn = dbndiff + dbnmeani / n",
    "ex1_C": "dC = torch.zeros_like(C)\ndC.index_add_(0, Xb.flatten(), demb.reshape(-1, C.shape[1]))",
    "ex2_logits": ("probs_fast = logits.softmax(dim=1)\n"
                   "dlogits = (probs_fast - F.one_hot(Yb, num_classes=logits.shape[1])) / n"),
}

# Typical mistakes, one per named unit; EXPECTED_LOST is what each of them costs.
BEN_ANSWERS = {
    "ex1_logprobs": "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = 1.0 / n  # sign forgotten",
    "ex1_counts": "dcounts = counts_sum_inv * dprobs  # only one of the two uses of counts",
    "ex1_W2": "dW2 = dlogits.T @ h  # transposed",
    "ex1_bnbias": "dbnbias = dhpreact.sum(0)  # keepdim forgotten",
    "ex1_bndiff2": "dbndiff2 = (1.0 / n) * torch.ones_like(bndiff2) * dbnvar  # n instead of n-1",
    "ex1_C": "dC = C.grad  # asks autograd: earns nothing",
    "ex2_logits": "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1  # the mean's 1/n is missing",
    "ex3_hprebn": ("dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)"
                   " - bnraw * (dhpreact * bnraw).sum(0))  # Bessel's n/(n-1) dropped"),
}
EXPECTED_LOST = tuple(BEN_ANSWERS)


def filled(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def build(root: Path = REPO, out: Path | None = None) -> dict[str, Path]:
    """Write out/examples/submitted/<student>/... (out defaults to root) from root's release and solutions."""
    out = root if out is None else out
    release = nbformat.read(notebook_path(root, "release"), as_version=4)
    solutions = solution_cells(root)
    submissions = {
        "ada": filled(release, {**solutions, **ADA_ANSWERS}),
        "ben": filled(release, {**solutions, **BEN_ANSWERS}),
        "cleo": release,
    }
    written = {}
    for student, nb in submissions.items():
        path = out / "examples" / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(nbformat.writes(nb) + "\n")
        written[student] = path
    return written


if __name__ == "__main__":
    for student, path in build().items():
        print(student, "->", path.relative_to(REPO))
