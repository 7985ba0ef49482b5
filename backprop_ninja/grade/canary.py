"""The canary: a right answer for every graded unit, written from the unit table's math, as a student might.

Before it grades anyone, the engine grades these under the same limits and isolation
(engine.ensure_environment): if they do not score full, the machine is at fault, not the students.
The kit's tests use them as the right answers too.

Some cells lean on earlier ones on purpose, like the lecture does: the `counts_sum_inv` cell starts
`dcounts` and the `counts` cell adds the second branch to it; the `C` cell defines a helper that
Exercise 4 calls again.
"""

REFERENCE_CELLS = {
    "ex1_logprobs": """
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0 / n
""",
    "ex1_probs": "dprobs = dlogprobs / probs",
    "ex1_counts_sum_inv": """
dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
dcounts = counts_sum_inv * dprobs  # first of the two branches into counts
""",
    "ex1_counts_sum": "dcounts_sum = -counts_sum**-2 * dcounts_sum_inv",
    "ex1_counts": "dcounts += torch.ones_like(counts) * dcounts_sum  # second branch",
    "ex1_norm_logits": "dnorm_logits = counts * dcounts",
    "ex1_logit_maxes": "dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)",
    "ex1_logits": """
dlogits = dnorm_logits.clone()
dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
""",
    "ex1_h": "dh = dlogits @ W2.T",
    "ex1_W2": "dW2 = h.T @ dlogits",
    "ex1_b2": "db2 = dlogits.sum(0)",
    "ex1_hpreact": "dhpreact = (1.0 - h**2) * dh",
    "ex1_bngain": "dbngain = (bnraw * dhpreact).sum(0, keepdim=True)",
    "ex1_bnbias": "dbnbias = dhpreact.sum(0, keepdim=True)",
    "ex1_bnraw": "dbnraw = bngain * dhpreact",
    "ex1_bnvar_inv": "dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)",
    "ex1_bnvar": "dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv",
    "ex1_bndiff2": "dbndiff2 = torch.ones_like(bndiff2) / (n - 1) * dbnvar",
    "ex1_bndiff": "dbndiff = bnvar_inv * dbnraw + 2 * bndiff * dbndiff2",
    "ex1_bnmeani": "dbnmeani = -dbndiff.sum(0, keepdim=True)",
    "ex1_hprebn": "dhprebn = dbndiff.clone() + torch.ones_like(hprebn) / n * dbnmeani",
    "ex1_embcat": "dembcat = dhprebn @ W1.T",
    "ex1_W1": "dW1 = embcat.T @ dhprebn",
    "ex1_b1": "db1 = dhprebn.sum(0)",
    "ex1_emb": "demb = dembcat.view(emb.shape)",
    "ex1_C": """
def scatter_rows(index, rows, table):
    # every row of `rows` flows back to the row of the table it was looked up from
    grad = torch.zeros_like(table)
    for i in range(index.shape[0]):
        for j in range(index.shape[1]):
            grad[index[i, j]] += rows[i, j]
    return grad

dC = scatter_rows(Xb, demb, C)
""",
    "ex2_logits": """
dlogits = F.softmax(logits, 1)
dlogits[range(n), Yb] -= 1
dlogits /= n
""",
    "ex3_hprebn": """
dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                    - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
""",
    "ex4_backward": """
def manual_backward(parameters, cache):
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    Xb, Yb, h, bnraw = cache["Xb"], cache["Yb"], cache["h"], cache["bnraw"]
    n = Xb.shape[0]
    dlogits = F.softmax(cache["logits"], 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    dW2, db2 = h.T @ dlogits, dlogits.sum(0)
    dhpreact = (1.0 - h**2) * (dlogits @ W2.T)
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = bngain * cache["bnvar_inv"] / n * (n * dhpreact - dhpreact.sum(0)
                                                 - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    dW1, db1 = cache["embcat"].T @ dhprebn, dhprebn.sum(0)
    demb = (dhprebn @ W1.T).view(cache["emb"].shape)
    return [scatter_rows(Xb, demb, C), dW1, db1, dW2, db2, dbngain, dbnbias]
""",
}
