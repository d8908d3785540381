#!/usr/bin/env python3
"""Replays `auto`'s selection rules leave-one-dataset-out from `petri curve` records made with
`auto:diagnostics=test-scores` (scripts/generalise.sh writes them, one JSON-lines file per set).

Each record holds, for its training set: every candidate's inner-CV fold scores (`fold0: NAME`, ...), its test
score (`test: NAME`), and the scale probe's per-split inner scores and test score at every crop. A rule is a
function of the inner scores only; its value on a record is the test score of what it picks. For each set left
out, the rule settings with the best mean over the *other* sets are chosen (ties: the simpler setting, listed
first) and scored on the set left out. Prints Markdown tables: per set and size, `auto` as run, `lp`, each
candidate alone, the default rules and the rules chosen without the set.

Usage: scripts/generalise.py out/generalise/*.jsonl
"""
import json
import math
import os
import re
import sys
from collections import defaultdict

INF = float("inf")


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def sd(xs):
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def paired_gain(a, b):
    g = [x - y for x, y in zip(a, b)]
    if not g:
        return 0.0, 0.0
    return mean(g), (sd(g) / math.sqrt(len(g)) if len(g) > 1 else 0.0)


def load(paths):
    """{set: {(size, seed): {'auto': record, 'lp': record}}}"""
    data = defaultdict(dict)
    for path in paths:
        name = os.path.basename(path).rsplit(".", 1)[0]
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line of a killed run
                kind = "auto" if r["method"].startswith("auto") else r["method"]
                data[name].setdefault((r["size"], r["seed"]), {})[kind] = r
    return data


class Evidence:
    """What one auto record says: the candidates' fold scores and test scores, the probes' per crop."""

    def __init__(self, record):
        s = record.get("inner_scores", {})
        # Images per class asked for (a class with fewer gives what it has: bccd's monocytes at n=20 give 14).
        self.smallest = record["size"]
        blends = [k[len("test: "):] for k in s if k.startswith("test: blend[")]
        if not blends:
            raise ValueError("record without test scores: run auto with diagnostics=test-scores")
        self.blend = blends[0]
        inner = self.blend[len("blend["):-1]
        self.mlp, self.cnn = inner.split(" + ", 1)
        self.test = {k: s["test: " + n] for k, n in (("mlp", self.mlp), ("cnn", self.cnn), ("blend", self.blend))}
        self.folds = {}
        for k, n in (("mlp", self.mlp), ("cnn", self.cnn), ("blend", self.blend)):
            f = sorted((int(key[4:key.index(":")]), v) for key, v in s.items() if key.startswith("fold") and key.endswith(": " + n))
            self.folds[k] = [v for _, v in f]
        self.auto = record["balanced_accuracy"]
        # Scale probes: crop -> per-split true-class probabilities, test score.
        self.probe_splits, self.probe_test = defaultdict(list), {}
        for key, v in s.items():
            m = re.match(r"scale-p(\d+): (.*)$", key)
            if m:
                self.probe_splits[crop_of(m.group(2))].append((int(m.group(1)), v))
                if "test: " + m.group(2) in s:
                    self.probe_test[crop_of(m.group(2))] = s["test: " + m.group(2)]
        self.probe_splits = {c: [v for _, v in sorted(xs)] for c, xs in self.probe_splits.items()}


def crop_of(name):
    m = re.search(r"crop([0-9.]+)", name)
    return float(m.group(1)) if m else 1.0


# ---- the candidate rule (what to predict with, from the inner scores) ----

def choose(e, blend_below, challenger, blend_margin, with_se):
    if e.smallest < blend_below or not e.folds["mlp"]:
        return "blend"
    chosen, best = "mlp", 0.0
    g, se = paired_gain(e.folds["cnn"], e.folds["mlp"])
    if g > challenger + (se if with_se else 0) and g > best:
        chosen, best = "cnn", g
    gb = mean(e.folds["blend"]) - mean(e.folds["mlp"])
    if gb > blend_margin and gb > best:
        chosen = "blend"
    return chosen


# Simplest first: ties go to the earlier setting.
RULES = [("always blend", (INF, 0, 0, False)), ("always mlp", (0, INF, INF, False)), ("always cnn", (0, -INF, INF, False))]
for bb in (10, 0):
    for mc in (0.0, 0.02, 0.05, 0.1, INF):
        for mb in (-INF, 0.0, 0.03, 0.05, INF):
            for se in (False, True):
                if mc == INF and se:
                    continue
                RULES.append((f"blend below {bb}, challenger {mc}{' + SE' if se else ''}, blend {mb}", (bb, mc, mb, se)))
DEFAULT = "blend below 10, challenger 0.02 + SE, blend 0.03"


def rule_value(e, rule):
    p = dict(RULES)[rule]
    if p == (0, -INF, INF, False):
        return e.test["cnn"]
    return e.test[choose(e, *p)]


# ---- the scale rule (probe test score at the crop chosen) ----

SCALE_MARGINS = [0.25, 0.0, 0.1, 0.5, 1.0, INF]


def scale_value(e, margin):
    crops = sorted(e.probe_splits, reverse=True)
    if not crops or 1.0 not in e.probe_splits or not e.probe_test:
        return None
    others = [c for c in crops if c != 1.0]
    best = max(others, key=lambda c: mean(e.probe_splits[c]))
    whole = e.probe_splits[1.0]
    ratio = [a / max(b, 1e-9) for a, b in zip(e.probe_splits[best], whole)]
    g, se = paired_gain(ratio, [1.0] * len(ratio))
    crop = best if g > margin + se else 1.0
    return e.probe_test.get(crop)


def per_set(data, value):
    """{set: {size: [values over seeds]}}"""
    out = {}
    for s, runs in data.items():
        bysize = defaultdict(list)
        for (size, seed), r in sorted(runs.items()):
            v = value(r)
            if v is not None:
                bysize[size].append(v)
        out[s] = dict(bysize)
    return out


def set_mean(table, s):
    vals = [mean(v) for v in table[s].values() if v]
    return mean(vals) if vals else float("nan")


def lodo(data, settings, value):
    """For each set: the setting best on the others (ties to the first) and its table on the left-out set."""
    tables = {name: per_set(data, lambda r, n=name: value(r, n)) for name in settings}
    chosen = {}
    for left in data:
        others = [s for s in data if s != left]
        best = max(settings, key=lambda n: (round(mean([set_mean(tables[n], s) for s in others]), 6), -settings.index(n)))
        chosen[left] = best
    return tables, chosen


def main(paths):
    data = load(paths)
    ev = {s: {k: Evidence(r["auto"]) for k, r in runs.items() if "auto" in r} for s, runs in data.items()}
    data = {s: v for s, v in ev.items() if v}
    raw = load(paths)
    lp = per_set(raw, lambda r: r["lp"]["balanced_accuracy"] if "lp" in r else None)
    ft_name = next((k for runs in raw.values() for r in runs.values() for k in r if k not in ("auto", "lp")), None)
    ft = per_set(raw, lambda r: r[ft_name]["balanced_accuracy"] if ft_name in r else None) if ft_name else {}
    ft_seconds = [r[ft_name]["seconds"] for runs in raw.values() for r in runs.values() if ft_name and ft_name in r]
    names = [n for n, _ in RULES]
    rtables, rchosen = lodo(data, names, lambda e, n: rule_value(e, n))
    stables, schosen = lodo(data, SCALE_MARGINS, lambda e, m: scale_value(e, m))
    fixed = {k: per_set(data, lambda e, k=k: e.test[k]) for k in ("mlp", "cnn", "blend")}
    auto = per_set(data, lambda e: e.auto)

    sizes = sorted({size for s in data for size in auto[s]})
    print("## Candidate rule, left out: each set scored with the rule chosen on the others\n")
    print(f"| set | n | `auto` as run | `lp` | `{ft_name or 'fine-tuning'}` | MLP family | cnn-mini | blend | default rule | rule chosen without the set | that rule |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    left_means, default_means, losses = [], [], []
    for s in sorted(data):
        for n in sizes:
            if n not in auto[s]:
                continue
            def f(t):
                v = t.get(n, [])
                return f"{mean(v):.3f} ± {sd(v):.3f}" if v else "–"
            lv, dv = rtables[rchosen[s]][s][n], rtables[DEFAULT][s][n]
            left_means.append(mean(lv))
            default_means.append(mean(dv))
            noise = sd([a - b for a, b in zip(lv, dv)]) / math.sqrt(max(1, len(lv)))
            losses.append((s, n, mean(lv) - mean(dv), noise))
            print(f"| {s} | {n} | {f(auto[s])} | {f(lp.get(s, {}))} | {f(ft.get(s, {}))} | {f(fixed['mlp'][s])} | {f(fixed['cnn'][s])} | "
                  f"{f(fixed['blend'][s])} | {f(rtables[DEFAULT][s])} | {rchosen[s]} | {f(rtables[rchosen[s]][s])} |")
    print(f"\nLeft-out mean: chosen rules {mean(left_means):.4f}, default rule {mean(default_means):.4f}.")
    worst = min(losses, key=lambda x: x[2])
    print(f"Largest left-out loss against the default: {worst[0]} n={worst[1]} {worst[2]:+.4f} (paired seed SE {worst[3]:.4f}).")
    print("\nOn all sets together: " + ", ".join(
        f"{n} {mean([set_mean(rtables[n], s) for s in data]):.4f}" for n in ("always blend", "always mlp", "always cnn", DEFAULT)))

    if ft_seconds:
        print(f"`{ft_name}`: {mean(ft_seconds):.1f} s per evaluation on average (fit and test prediction).")
    print("\n## Scale margin, left out (the probe's test score at the crop each margin picks)\n")
    print("| set | margin chosen without the set | probe, that margin | probe, margin 0.25 | whole image always |")
    print("|---|---|---|---|---|")
    for s in sorted(data):
        m = schosen[s]
        print(f"| {s} | {m} | {set_mean(stables[m], s):.3f} | {set_mean(stables[0.25], s):.3f} | {set_mean(stables[INF], s):.3f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
