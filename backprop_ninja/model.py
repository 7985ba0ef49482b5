"""The makemore MLP of the exercise: data, initialisation, the exploded forward pass and autograd's reference.

This is trusted code: the grader and the kit's tests use it, student code never runs next to it.
The notebook carries its own copy of the same lines (it must run with torch alone); a kit test
checks that the two agree on the numbers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

VOCAB = "." + "abcdefghijklmnopqrstuvwxyz"  # '.' is index 0: it starts and ends every name
BLOCK_SIZE = 3
N_EMBD = 10
N_HIDDEN = 64
BATCH_SIZE = 32
NOTEBOOK_SEED = 2147483647  # the generator seed of the lecture and of our notebook
BN_EPS = 1e-5

PARAMETER_NAMES = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")

# How a replay's inputs are made (see replay_values): as drawn, with the stress conditions of
# stress_parameters, as drawn but in float64 (the student's code then runs in float64 too), or both: the
# stress conditions in float64 (what the grader replays, engine.SPECIAL_REPLAYS).
PLAIN, STRESS, FLOAT64, STRESS64 = "plain", "stress", "float64", "stress64"
VARIANTS = (PLAIN, STRESS, FLOAT64, STRESS64)
STRESSED = frozenset({STRESS, STRESS64})   # variants with the conditions of stress_parameters
IN_FLOAT64 = frozenset({FLOAT64, STRESS64})  # variants whose values the student gets in float64
# The stress replay's conditions (stress_parameters): the batchnorm column with a tiny variance (a tenth
# of BN_EPS), the two logits columns that tie, and the size the logits are stretched to.
TINY_VARIANCE_COLUMN = 7
TINY_VARIANCE = 0.1 * BN_EPS
TIE_COLUMNS = (1, 5)
LARGE_LOGITS_STD = 4.0  # 6 leaves a margin of x4 under ATOL for correct float32 answers, 4 the x6 of the others

# The forward pass of Exercise 1, one named intermediate per line, in execution order.
INTERMEDIATES = (
    "emb", "embcat", "hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar", "bnvar_inv", "bnraw",
    "hpreact", "h", "logits", "logit_maxes", "norm_logits", "counts", "counts_sum",
    "counts_sum_inv", "probs", "logprobs",
)


def encode(word: str) -> list[int]:
    return [VOCAB.index(ch) for ch in word]


def build_dataset(words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (3 previous characters -> next character) pair of every word."""
    contexts, targets = [], []
    for word in words:
        context = [0] * BLOCK_SIZE
        for ix in encode(word) + [0]:
            contexts.append(context)
            targets.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(contexts), torch.tensor(targets)


def split_words(words: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The 80/10/10 split of the notebook: shuffle as random.seed(42) then random.shuffle do, then cut.

    A Random(42) of its own gives the same order without touching the global generator, which another thread
    (the engine's canary) may be using at the same time."""
    words = list(words)
    random.Random(42).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


def init_parameters(g: torch.Generator, n_hidden: int = N_HIDDEN) -> list[torch.Tensor]:
    """The lecture's initialisation, with every draw taken from the seeded generator `g`."""
    vocab_size, fan_in = len(VOCAB), N_EMBD * BLOCK_SIZE
    C = torch.randn((vocab_size, N_EMBD), generator=g)
    W1 = torch.randn((fan_in, n_hidden), generator=g) * (5 / 3) / fan_in**0.5
    b1 = torch.randn(n_hidden, generator=g) * 0.1  # useless under batchnorm, kept to be graded
    W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
    b2 = torch.randn(vocab_size, generator=g) * 0.1
    bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
    return [C, W1, b1, W2, b2, bngain, bnbias]


def sample_batch(X: torch.Tensor, Y: torch.Tensor, g: torch.Generator, n: int):
    ix = torch.randint(0, X.shape[0], (n,), generator=g)
    return X[ix], Y[ix]


def forward(params: list[torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor) -> dict[str, torch.Tensor]:
    """The exploded forward pass; returns every intermediate by name, and `loss`."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    n = Xb.shape[0]
    v = {}
    v["emb"] = C[Xb]
    v["embcat"] = v["emb"].view(n, -1)
    v["hprebn"] = v["embcat"] @ W1 + b1
    v["bnmeani"] = 1 / n * v["hprebn"].sum(0, keepdim=True)
    v["bndiff"] = v["hprebn"] - v["bnmeani"]
    v["bndiff2"] = v["bndiff"] ** 2
    v["bnvar"] = 1 / (n - 1) * v["bndiff2"].sum(0, keepdim=True)  # Bessel's correction
    v["bnvar_inv"] = (v["bnvar"] + BN_EPS) ** -0.5
    v["bnraw"] = v["bndiff"] * v["bnvar_inv"]
    v["hpreact"] = bngain * v["bnraw"] + bnbias
    v["h"] = torch.tanh(v["hpreact"])
    v["logits"] = v["h"] @ W2 + b2
    v["logit_maxes"] = v["logits"].max(1, keepdim=True).values
    v["norm_logits"] = v["logits"] - v["logit_maxes"]
    v["counts"] = v["norm_logits"].exp()
    v["counts_sum"] = v["counts"].sum(1, keepdim=True)
    v["counts_sum_inv"] = v["counts_sum"] ** -1
    v["probs"] = v["counts"] * v["counts_sum_inv"]
    v["logprobs"] = v["probs"].log()
    v["loss"] = -v["logprobs"][torch.arange(n), Yb].mean()
    return v


def reference_gradients(params: list[torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor) -> dict[str, torch.Tensor]:
    """Autograd's gradient of the loss for every parameter and intermediate, in float64."""
    params = [p.detach().double().requires_grad_() for p in params]
    v = forward(params, Xb, Yb)
    for name in INTERMEDIATES:
        v[name].retain_grad()
    v["loss"].backward()
    grads = {name: v[name].grad.detach() for name in INTERMEDIATES}
    grads.update({name: p.grad.detach() for name, p in zip(PARAMETER_NAMES, params)})
    return grads


@dataclass
class Replay:
    """One set of inputs on which a submission is replayed: the tensors a student sees (float32, or float64
    for the IN_FLOAT64 variants) and autograd's float64 gradients for them."""

    seed: int
    n: int
    values: dict[str, torch.Tensor]     # parameters, Xb, Yb and intermediates (float32, no grad)
    values64: dict[str, torch.Tensor]   # the same in float64, for diagnostics
    grads: dict[str, torch.Tensor]      # reference gradients, float64
    variant: str = PLAIN                # one of VARIANTS


def stress_parameters(params: list[torch.Tensor], Xb: torch.Tensor) -> list[torch.Tensor]:
    """The drawn parameters, changed (deterministically, in place of copies) so that near-misses show.

    - Tiny variance: column TINY_VARIANCE_COLUMN of W1 and b1 is scaled so that the column of hprebn has
      variance TINY_VARIANCE over the batch, a tenth of BN_EPS (a dead unit). There, a `dbnvar` or a
      `bnvar_inv` written without the `+ 1e-5` is off by a factor of about 36, while elsewhere it is off by a
      few parts in a million, inside the float32 tolerance. W1 and b1 are scaled together so the column keeps
      its float32 precision (a large b1 on a tiny spread would round the spread away).
    - Large logits: W2 and b2 are scaled so the logits have a standard deviation of LARGE_LOGITS_STD: each
      row's softmax is then peaked (its largest probability near 1, the smallest down to about 1e-11, still
      far from float32's limits, and no logit is near exp's overflow: a softmax without the max subtracted
      stays right). An answer off by a relative 5e-3 in the probabilities, often hidden at the lecture's small
      logits, is then off by up to 5e-3 / n at the peak.
    - Ties: the W2 columns TIE_COLUMNS are set to zero and their b2 entries to one value, the midpoint of two
      middle row maxima of the other columns. So those two logits equal each other exactly (in float32 and in
      float64, whatever the order of the matmul's sums), and in about half of the rows they are the row's
      maximum, twice. Autograd sends the gradient of `logits.max(1).values` to the first of them (the index
      `max` and `argmax` return), and so does the table's share (units.py).
    """
    C, W1, b1, W2, b2, bngain, bnbias = (p.clone() for p in params)
    n = Xb.shape[0]
    embcat = C[Xb].view(n, -1).double()
    j = TINY_VARIANCE_COLUMN
    spread = (embcat @ W1[:, j].double()).var()  # Bessel's correction, as the forward pass has it
    shrink = float((TINY_VARIANCE / spread) ** 0.5)
    W1[:, j] *= shrink
    b1[j] *= shrink
    h = torch.tanh(_hpreact_of(embcat, [p.double() for p in (W1, b1, bngain, bnbias)]))
    stretch = LARGE_LOGITS_STD / float((h @ W2.double() + b2.double()).std())
    W2 *= stretch
    b2 *= stretch
    first, second = TIE_COLUMNS
    W2[:, first] = W2[:, second] = 0.0
    others = [c for c in range(W2.shape[1]) if c not in TIE_COLUMNS]
    row_maxes = (h @ W2.double() + b2.double())[:, others].max(1).values
    b2[first] = b2[second] = _value_between_row_maxes(row_maxes)
    return [C, W1, b1, W2, b2, bngain, bnbias]


def _value_between_row_maxes(row_maxes: torch.Tensor) -> float:
    """A value above the maxima of about a quarter to three quarters of the rows, far from every one of them.

    The midpoint of the widest gap between consecutive distinct maxima in the middle half: a batch often holds
    the same context twice (equal rows), and a value close to some row's maximum could fall on either side of
    it in float32 and in float64, so the student and autograd would not see the same argmax."""
    ordered = row_maxes.sort().values
    n = len(ordered)
    pairs = [(float(ordered[i] - ordered[i - 1]), i) for i in range(max(1, n // 4), max(2, 3 * n // 4 + 1))]
    _, i = max(pairs)
    return float(ordered[i - 1] + ordered[i]) / 2


def _hpreact_of(embcat: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """hpreact for the given embcat and (W1, b1, bngain, bnbias), as forward computes it."""
    W1, b1, bngain, bnbias = params
    hprebn = embcat @ W1 + b1
    bndiff = hprebn - hprebn.mean(0, keepdim=True)
    bnvar = bndiff.pow(2).sum(0, keepdim=True) / (hprebn.shape[0] - 1)
    return bngain * bndiff * (bnvar + BN_EPS) ** -0.5 + bnbias


def replay_values(X: torch.Tensor, Y: torch.Tensor, seed: int, n: int, n_hidden: int = N_HIDDEN,
                  variant: str = PLAIN):
    """The values a student sees and their float64 twins, for one seed, batch size and variant (no gradients:
    safe to hold in a process that will run student code). A student sees float32 values, except on the
    IN_FLOAT64 variants, where both are float64."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown replay variant {variant!r}")
    g = torch.Generator().manual_seed(seed)
    params = init_parameters(g, n_hidden)
    Xb, Yb = sample_batch(X, Y, g, n)
    if variant in STRESSED:
        params = stress_parameters(params, Xb)  # from the float32 draw: the same numbers in both dtypes
    if variant in IN_FLOAT64:
        params = [p.double() for p in params]
    params64 = [p.double() for p in params]
    with torch.no_grad():
        values, values64 = forward(params, Xb, Yb), forward(params64, Xb, Yb)
    for store, ps in ((values, params), (values64, params64)):
        store.update(zip(PARAMETER_NAMES, ps))
        store.update(Xb=Xb, Yb=Yb)
    return values, values64


def make_replay(X: torch.Tensor, Y: torch.Tensor, seed: int, n: int, n_hidden: int = N_HIDDEN,
                variant: str = PLAIN) -> Replay:
    values, values64 = replay_values(X, Y, seed, n, n_hidden, variant)
    params = [values[name] for name in PARAMETER_NAMES]
    return Replay(seed, n, values, values64, reference_gradients(params, values["Xb"], values["Yb"]), variant)
