#!/usr/bin/env python3
"""Replays blend rules leave-one-dataset-out from `petri curve` records made with `auto:diagnostics=probabilities`
(`make generalise` writes them): each record holds every candidate's out-of-fold probabilities on its training
images and its test probabilities, and those of three logistic-regression probes (`AutoEvidence`).

A blend rule maps the out-of-fold evidence to weights over the families, and is scored by the balanced accuracy
of the weighted test probabilities. Families: M (the MLP family), C (cnn-mini from scratch), L1 (the peers'
linear probe, Lite0 head), L3 (logistic regression on the MLP family's features), LC (Lite0 + CellNet head),
and F (a fine-tuning method run on the same splits, test probabilities only, so only in fixed blends).
Rules:
- `fixed W`: the same weights everywhere (the default below 10 per class is M:C = 2:1);
- `evidence S m` over some families: the weights on a grid (sixths) that score best out of fold by S
  (balanced accuracy, class-balanced true-class probability, or log loss), taken only when they beat the
  default's out-of-fold score by more than m; else the default weights.
For each set left out, the rule best on the other sets (mean over sets of the mean over sizes; ties go to the
simpler rule, listed first) is scored on it. Adoption (issue #17): the left-out mean improves on the default
and no left-out cell loses more than its paired seed standard error.

Usage: scripts/generalise_blends.py out/generalise/*.jsonl
"""
import itertools
import json
import math
import os
import sys
from collections import defaultdict

from generalise import mean, sd


def balanced_accuracy(labels, rows):
    hit, count = defaultdict(int), defaultdict(int)
    for y, r in zip(labels, rows):
        count[y] += 1
        hit[y] += int(max(range(len(r)), key=lambda c: r[c]) == y)
    return mean([hit[c] / count[c] for c in count])


def soft_score(labels, rows):
    s, count = defaultdict(float), defaultdict(int)
    for y, r in zip(labels, rows):
        count[y] += 1
        s[y] += r[y]
    return mean([s[c] / count[c] for c in count])


def neg_log_loss(labels, rows):
    return -mean([-math.log(max(r[y], 1e-6)) for y, r in zip(labels, rows)])


SCORES = {"accuracy": balanced_accuracy, "p": soft_score, "log-loss": neg_log_loss}


def family(name):
    if name.startswith("mlp["):
        return "M"
    if name.startswith("scratch["):
        return "C"
    if name.startswith("lp["):
        backbones = name[3:].split(",")[0]
        return "L3" if "lite1" in backbones else ("LC" if "+" in backbones else "L1")
    return None


class Record:
    def __init__(self, auto, others):
        e = auto["evidence"]
        self.train, self.test = e["train_labels"], e["test_labels"]
        self.oof, self.probs = {}, {}
        for name, rows in e["test"].items():
            f = family(name)
            if f:
                self.probs[f] = rows
                if name in e["out_of_fold"]:
                    self.oof[f] = e["out_of_fold"][name]
        for r in others:   # a fine-tuning method on the same splits: test probabilities only
            if r.get("probabilities") and len(r["probabilities"]) == len(self.test):
                self.probs["F"] = r["probabilities"]
        self.auto = auto["balanced_accuracy"]
        self.size = auto["size"]


def combine(rows_by_family, weights):
    fams = [f for f, w in weights.items() if w > 0]
    n, k = len(rows_by_family[fams[0]]), len(rows_by_family[fams[0]][0])
    total = sum(weights[f] for f in fams)
    return [[sum(weights[f] * rows_by_family[f][i][c] for f in fams) / total for c in range(k)] for i in range(n)]


DEFAULT = {"M": 2, "C": 1}
AS_RUN = "as run"   # what auto chose: the 2:1 blend below 10 per class, inner CV's choice above


def simplex(families, steps=6):
    for parts in itertools.product(range(steps + 1), repeat=len(families)):
        if sum(parts) == steps:
            yield dict(zip(families, parts))


def rules():
    """(name, function(record) -> weights or None when the record lacks a family), simplest first."""
    out = [("as run (default)", lambda r: AS_RUN), ("fixed M:C 2:1", lambda r: DEFAULT)]
    fixed = [{"M": 1}, {"M": 1, "C": 1}, {"M": 3, "C": 1}, {"M": 2, "C": 1, "L1": 1}, {"M": 2, "C": 1, "L3": 1},
             {"M": 2, "C": 1, "LC": 1}, {"M": 1, "C": 1, "L3": 1}, {"M": 1, "L3": 1}, {"M": 2, "C": 1, "F": 1},
             {"M": 2, "C": 1, "F": 2}, {"M": 1, "F": 1}]
    for w in fixed:
        out.append(("fixed " + ":".join(w) + " " + ":".join(str(v) for v in w.values()), lambda r, w=w: w))
    for fams in (("M", "C"), ("M", "C", "L1"), ("M", "C", "L3"), ("M", "C", "LC")):
        grid = list(simplex(fams))
        for score in SCORES:
            for margin in (0.0, 0.01, 0.02, 0.05, 0.1):
                out.append((f"evidence {'+'.join(fams)} by {score}, margin {margin}",
                            lambda r, g=grid, s=score, m=margin, f=fams: evidence_weights(r, g, s, m, f)))
    # Each rule also below 10 per class only, inner CV's choice as run above.
    out += [(name + ", below 10 only", lambda r, f=f: f(r) if r.size < 10 else AS_RUN) for name, f in out[2:]]
    return out


def evidence_weights(r, grid, score, margin, fams):
    if any(f not in r.oof for f in fams) or any(f not in r.oof for f in DEFAULT):
        return None
    s = SCORES[score]
    base = s(r.train, combine(r.oof, DEFAULT))
    best, best_w = base, DEFAULT
    for w in grid:
        if sum(w.values()) == 0:
            continue
        v = s(r.train, combine(r.oof, w))
        if v > best + 1e-12:
            best, best_w = v, w
    return best_w if best - base > margin else DEFAULT


def value(r, rule):
    w = rule(r)
    if w == AS_RUN:
        return r.auto
    if w is None or any(f not in r.probs for f, v in w.items() if v > 0):
        return None
    return balanced_accuracy(r.test, combine(r.probs, w))


def load(paths):
    data = {}
    for path in paths:
        name = os.path.basename(path).rsplit(".", 1)[0]
        by_key = defaultdict(list)
        for line in open(path):
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            by_key[(r["size"], r["seed"])].append(r)
        recs = {}
        for key, rs in by_key.items():
            autos = [r for r in rs if r["method"].startswith("auto") and "evidence" in r]
            ft = [r for r in rs if r["method"] not in ("lp",) and not r["method"].startswith("auto")]
            if autos:
                recs[key] = Record(autos[0], ft)
        if recs:
            data[name] = recs
    return data


def table(data, rule):
    """{set: {size: [values over seeds]}}; None where a record lacks what the rule needs."""
    t = {}
    for s, recs in data.items():
        by = defaultdict(list)
        for (size, seed), r in sorted(recs.items()):
            v = value(r, rule)
            if v is None:
                return None
            by[size].append(v)
        t[s] = dict(by)
    return t


def set_mean(t, s):
    return mean([mean(v) for v in t[s].values()])


def main(paths):
    data = load(paths)
    if not data:
        sys.exit("no records with evidence: run auto with diagnostics=probabilities")
    named = rules()
    tables = {}
    for name, rule in named:
        t = table(data, rule)
        if t is not None:
            tables[name] = t
    order = [n for n, _ in named if n in tables]
    default = order[0]
    sets = sorted(data)
    sizes = sorted({size for s in sets for size in tables[default][s]})
    # Check: the default rule's blend is what auto predicted below 10 per class.
    for s in sets:
        for (size, seed), r in data[s].items():
            v = value(r, lambda _: DEFAULT)
            if size < 10 and v is not None and abs(v - r.auto) > 1e-6:
                print(f"note: {s} n={size} seed {seed}: the 2:1 blend replays to {v:.4f}, auto scored {r.auto:.4f}")
    chosen = {}
    for left in sets:
        others = [s for s in sets if s != left]
        chosen[left] = max(order, key=lambda n: (round(mean([set_mean(tables[n], s) for s in others]), 6), -order.index(n)))
    print("## Blend rules, left out: each set scored with the rule chosen on the other sets\n")
    print("| set | n | `auto` as run (default) | M:C 2:1 | M alone | L3 alone | rule chosen without the set | that rule | paired gain ± SE |")
    print("|---|---|---|---|---|---|---|---|---|")
    alone = {f: table(data, lambda r, f=f: {f: 1}) for f in ("M", "L3")}
    left_means, default_means, worst = [], [], None
    for s in sets:
        for n in sorted(tables[default][s]):
            lv, dv = tables[chosen[s]][s][n], tables[default][s][n]
            blend21 = tables["fixed M:C 2:1"][s][n]
            gains = [a - b for a, b in zip(lv, dv)]
            se = sd(gains) / math.sqrt(len(gains))
            left_means.append(mean(lv))
            default_means.append(mean(dv))
            if worst is None or mean(gains) < worst[2]:
                worst = (s, n, mean(gains), se)
            f = lambda v: f"{mean(v):.3f}"
            a = {m: (f(alone[m][s][n]) if alone[m] else "–") for m in alone}
            print(f"| {s} | {n} | {f(dv)} | {f(blend21)} | {a['M']} | {a['L3']} | {chosen[s]} | {f(lv)} | {mean(gains):+.3f} ± {se:.3f} |")
    print(f"\nLeft-out mean: chosen rules {mean(left_means):.4f}, default {mean(default_means):.4f}. "
          f"Largest left-out loss: {worst[0]} n={worst[1]} {worst[2]:+.4f} (paired seed SE {worst[3]:.4f}).")
    print("\n## Every rule on all sets together (mean over sets and sizes; not a left-out figure)\n")
    ranked = sorted(order, key=lambda n: -mean([set_mean(tables[n], s) for s in sets]))
    for n in ranked[:15] + [default]:
        print(f"- {n}: {mean([set_mean(tables[n], s) for s in sets]):.4f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
