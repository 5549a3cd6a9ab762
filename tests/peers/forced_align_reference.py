"""A small pure-Python port of torchaudio's CPU `forced_align` and `merge_tokens`,
written from their documented algorithm (no torch): Viterbi over the 2L+1
blank-interleaved states, reachable states windowed by the frames left, ties
going to staying, then advancing, then skipping a blank; at the end the last
token beats the trailing blank on a tie. `merge_tokens` keeps runs of equal
non-blank labels with the mean score over each run.

Given a seed it writes random cases (emissions as log-softmax of Gaussian logits,
targets with repeats, T exactly L + R, T too short, tokens outside the vocabulary)
and what this port answers for each, as JSON on stdout.

    python forced_align_reference.py --seed 7 --cases 200
"""

import argparse
import json
import math
import random

import numpy as np

# float32 throughout, as torchaudio runs on float32 log-probabilities: the same IEEE
# additions in the same order give bit-identical sums on both sides.
F32 = np.float32
NEG_INF = F32("-inf")


def forced_align(emissions, targets, blank):
    T, V = len(emissions), len(emissions[0])
    L = len(targets)
    if L == 0:
        return {"error": "empty"}
    if any(t >= V or t < 0 for t in targets) or blank >= V:
        return {"error": "out_of_range"}
    R = sum(1 for i in range(1, L) if targets[i] == targets[i - 1])
    if T < L + R:
        return {"error": "too_short"}
    S = 2 * L + 1

    def label(s):
        return blank if s % 2 == 0 else targets[s // 2]

    alphas = [[NEG_INF] * S, [NEG_INF] * S]
    back = [[0] * S for _ in range(T)]
    start = 0 if T - (L + R) > 0 else 1
    end = 1 if S == 1 else 2
    for s in range(start, end):
        alphas[0][s] = emissions[0][label(s)]
    for t in range(1, T):
        if T - t <= L + R:
            if start % 2 == 1 and targets[start // 2] != targets[start // 2 + 1]:
                start += 1
            start += 1
        if t <= L + R:
            if end % 2 == 0 and end < 2 * L and targets[end // 2 - 1] != targets[end // 2]:
                end += 1
            end += 1
        cur, prev = alphas[t % 2], alphas[(t - 1) % 2]
        for s in range(S):
            cur[s] = NEG_INF
        first = start
        if start == 0:
            cur[0] = prev[0] + emissions[t][blank]
            back[t][0] = 0
            first += 1
        for s in range(first, end):
            x0, x1 = prev[s], prev[s - 1]
            x2 = NEG_INF
            if s % 2 == 1 and s != 1 and targets[s // 2] != targets[s // 2 - 1]:
                x2 = prev[s - 2]
            if x2 > x1 and x2 > x0:
                best, step = x2, 2
            elif x1 > x0 and x1 > x2:
                best, step = x1, 1
            else:
                best, step = x0, 0
            cur[s] = best + emissions[t][label(s)]
            back[t][s] = step
    last = alphas[(T - 1) % 2]
    state = S - 1 if last[S - 1] > last[S - 2] else S - 2
    path = [0] * T
    for t in range(T - 1, -1, -1):
        path[t] = label(state)
        state -= back[t][state]
    scores = [emissions[t][path[t]] for t in range(T)]
    return {"path": path, "scores": scores}


def mean_f32(values):
    total = F32(0.0)
    for v in values:
        total = F32(total + v)
    return F32(total / F32(len(values)))


def merge_tokens(path, scores, blank):
    spans, start = [], 0
    for t in range(1, len(path) + 1):
        if t == len(path) or path[t] != path[start]:
            if path[start] != blank:
                run = scores[start:t]
                spans.append({"token": path[start], "start": start, "end": t, "score": mean_f32(run)})
            start = t
    return spans


def log_softmax(row):
    m = max(row)
    z = math.log(sum(math.exp(x - m) for x in row)) + m
    return [x - z for x in row]


def case(rng, kind):
    V = rng.randint(3, 12)
    blank = rng.choice([0, V - 1])
    tokens = [t for t in range(V) if t != blank]
    L = rng.randint(1, 8)
    targets = [rng.choice(tokens) for _ in range(L)]
    if kind == "repeats" and L >= 2:
        for i in range(1, L):
            if rng.random() < 0.5:
                targets[i] = targets[i - 1]
    R = sum(1 for i in range(1, L) if targets[i] == targets[i - 1])
    if kind == "exact":
        T = L + R
    elif kind == "too_short":
        T = max(1, L + R - 1)
    else:
        T = L + R + rng.randint(0, 25)
    if kind == "out_of_range":
        targets[rng.randrange(L)] = V + rng.randint(0, 3)
    # Peaky emissions as acoustic models give, with ties now and then (equal rows).
    emissions = []
    for _ in range(T):
        if rng.random() < 0.1:
            row = [0.0] * V
        else:
            row = [rng.gauss(0, 2.5) for _ in range(V)]
        emissions.append(log_softmax(row))
    emissions = [[F32(x) for x in row] for row in emissions]
    out = forced_align(emissions, targets, blank)
    if "path" in out:
        out["spans"] = merge_tokens(out["path"], out["scores"], blank)
        for span in out["spans"]:
            span["score"] = float(span["score"])
        out["scores"] = [float(x) for x in out["scores"]]
    rows = [[float(x) for x in row] for row in emissions]
    return {"kind": kind, "blank": blank, "vocabulary": V, "targets": targets, "emissions": rows, **out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cases", type=int, default=200)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    kinds = ["random", "repeats", "exact", "too_short", "out_of_range"]
    cases = [case(rng, kinds[i % len(kinds)]) for i in range(args.cases)]
    print(json.dumps(cases))


if __name__ == "__main__":
    main()
