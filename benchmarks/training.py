"""Exercise 4 with the reference backward pass: how fast, and how good.

1. Speed, side by side: blocks of training steps with the manual backward and with autograd (`loss.backward()`)
   alternate on the same machine in one run; the ratio of their median step times is printed.
2. The full schedule (200,000 steps, lr 0.1 then 0.01; --steps to change) with the manual backward: wall time,
   then train and val loss after batchnorm calibration, as in the notebook.

The forward pass and `manual_backward` are taken from the solution source, so this measures exactly the code of
the notebook.    Run: .venv/bin/python benchmarks/training.py [--steps N] [--blocks K]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jupytext
import torch
import torch.nn.functional as F

from backprop_ninja import assign, data, model


def notebook_functions() -> dict:
    """forward, init_parameters and the reference manual_backward, executed from the solution source."""
    nb = jupytext.read(assign.text_source(assign.REPO), fmt="py:percent")
    namespace = {"torch": torch, "F": F, "n_embd": model.N_EMBD, "block_size": model.BLOCK_SIZE,
                 "vocab_size": len(model.VOCAB)}
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    exec(cells["ex4_forward"], namespace)
    exec(assign.solution_cells()["ex4_backward"], namespace)
    return namespace


def manual_step(ns, params, Xb, Yb, lr):
    with torch.inference_mode():  # as the notebook's training loop
        loss, cache = ns["forward"](params, Xb, Yb)
        for p, grad in zip(params, ns["manual_backward"](params, cache)):
            p.add_(grad, alpha=-lr)
    return loss


def autograd_step(ns, params, Xb, Yb, lr):
    loss, _ = ns["forward"](params, Xb, Yb)
    for p in params:
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in params:
            p.add_(p.grad, alpha=-lr)
    return loss


def time_block(step, ns, params, X, Y, gen, steps) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        ix = torch.randint(0, X.shape[0], (32,), generator=gen)
        step(ns, params, X[ix], Y[ix], 0.1)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--blocks", type=int, default=5, help="alternating timing blocks of 1,000 steps each")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the notebook's training cell does
    ns = notebook_functions()
    train, dev, _ = model.split_words(data.load_words())
    Xtr, Ytr = model.build_dataset(train)
    Xdev, Ydev = model.build_dataset(dev)

    manual_params = ns["init_parameters"](200)
    autograd_params = [p.clone().requires_grad_() for p in ns["init_parameters"](200)]
    gen = torch.Generator().manual_seed(1)
    manual_times, autograd_times = [], []
    for _ in range(args.blocks):
        manual_times.append(time_block(manual_step, ns, manual_params, Xtr, Ytr, gen, 1000))
        autograd_times.append(time_block(autograd_step, ns, autograd_params, Xtr, Ytr, gen, 1000))
    manual, auto = statistics.median(manual_times), statistics.median(autograd_times)
    print(f"step time, median of {args.blocks} alternating blocks of 1,000 steps:")
    print(f"  manual backward  {manual * 1e3:.3f} ms")
    print(f"  autograd         {auto * 1e3:.3f} ms")
    print(f"  ratio manual/autograd = {manual / auto:.2f}")

    params = ns["init_parameters"](200)
    gen = torch.Generator().manual_seed(2147483647)
    start = time.perf_counter()
    for step in range(args.steps):
        ix = torch.randint(0, Xtr.shape[0], (32,), generator=gen)
        manual_step(ns, params, Xtr[ix], Ytr[ix], 0.1 if step < args.steps // 2 else 0.01)
    elapsed = time.perf_counter() - start

    C, W1, b1, W2, b2, bngain, bnbias = params
    with torch.no_grad():
        hpre = C[Xtr].view(Xtr.shape[0], -1) @ W1 + b1
        mean, var = hpre.mean(0, keepdim=True), hpre.var(0, keepdim=True)

        def split_loss(X, Y):
            h = torch.tanh(bngain * (C[X].view(X.shape[0], -1) @ W1 + b1 - mean) * (var + 1e-5) ** -0.5 + bnbias)
            return F.cross_entropy(h @ W2 + b2, Y).item()

        print(f"{args.steps:,} steps with the manual backward in {elapsed:.1f} s")
        print(f"  train loss {split_loss(Xtr, Ytr):.4f}   val loss {split_loss(Xdev, Ydev):.4f}")


if __name__ == "__main__":
    main()
