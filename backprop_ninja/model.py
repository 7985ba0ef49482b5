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
    """One set of inputs on which a submission is replayed: the float32 tensors a student sees and
    autograd's float64 gradients for them."""

    seed: int
    n: int
    values: dict[str, torch.Tensor]     # parameters, Xb, Yb and intermediates (float32, no grad)
    values64: dict[str, torch.Tensor]   # the same in float64, for diagnostics
    grads: dict[str, torch.Tensor]      # reference gradients, float64


def replay_values(X: torch.Tensor, Y: torch.Tensor, seed: int, n: int, n_hidden: int = N_HIDDEN):
    """The float32 values a student sees and their float64 twins, for one seed and batch size (no gradients:
    safe to hold in a process that will run student code)."""
    g = torch.Generator().manual_seed(seed)
    params = init_parameters(g, n_hidden)
    Xb, Yb = sample_batch(X, Y, g, n)
    params64 = [p.double() for p in params]
    with torch.no_grad():
        values, values64 = forward(params, Xb, Yb), forward(params64, Xb, Yb)
    for store, ps in ((values, params), (values64, params64)):
        store.update(zip(PARAMETER_NAMES, ps))
        store.update(Xb=Xb, Yb=Yb)
    return values, values64


def make_replay(X: torch.Tensor, Y: torch.Tensor, seed: int, n: int, n_hidden: int = N_HIDDEN) -> Replay:
    values, values64 = replay_values(X, Y, seed, n, n_hidden)
    params = [values[name] for name in PARAMETER_NAMES]
    return Replay(seed, n, values, values64, reference_gradients(params, values["Xb"], values["Yb"]))
