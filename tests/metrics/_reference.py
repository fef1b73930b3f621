"""Naive float64 reference implementations (plain Python loops) for the metric tests."""

from __future__ import annotations

import math


def top_label(probs, labels):
    conf, hit = [], []
    for row, y in zip(probs, labels):
        best = max(range(len(row)), key=lambda c: (row[c], -c))  # first index on ties
        conf.append(float(row[best]))
        hit.append(1.0 if best == y else 0.0)
    return conf, hit


def edges(conf, n_bins, binning):
    if binning == "width":
        return [b / n_bins for b in range(n_bins + 1)]
    srt = sorted(conf)
    n = len(srt)
    return [0.0] + [srt[math.ceil(b * n / n_bins) - 1] for b in range(1, n_bins)] + [1.0]


def bins(conf, hit, n_bins, binning):
    e = edges(conf, n_bins, binning)
    out = [[] for _ in range(n_bins)]
    for c, h in zip(conf, hit):
        for b in range(n_bins):
            if e[b] < c <= e[b + 1] or (b == 0 and c == e[0]):
                out[b].append((c, h))
                break
        else:
            raise AssertionError(f"confidence {c} in no bin")
    return e, out


def ece(conf, hit, n_bins, binning):
    _, bs = bins(conf, hit, n_bins, binning)
    n = len(conf)
    total = 0.0
    for items in bs:
        if items:
            acc = sum(h for _, h in items) / len(items)
            cf = sum(c for c, _ in items) / len(items)
            total += len(items) / n * abs(acc - cf)
    return total


def mce(conf, hit, n_bins, binning):
    _, bs = bins(conf, hit, n_bins, binning)
    gaps = []
    for items in bs:
        if items:
            acc = sum(h for _, h in items) / len(items)
            cf = sum(c for c, _ in items) / len(items)
            gaps.append(abs(acc - cf))
    return max(gaps)


def classwise_ece(probs, labels, n_bins, binning):
    n_classes = len(probs[0])
    per = []
    for k in range(n_classes):
        conf = [float(row[k]) for row in probs]
        hit = [1.0 if y == k else 0.0 for y in labels]
        per.append(ece(conf, hit, n_bins, binning))
    return sum(per) / n_classes


def brier(probs, labels):
    total = 0.0
    for row, y in zip(probs, labels):
        total += sum((float(p) - (1.0 if c == y else 0.0)) ** 2 for c, p in enumerate(row))
    return total / len(labels)


def nll(probs, labels):
    return sum(-math.log(float(row[y])) for row, y in zip(probs, labels)) / len(labels)


def auroc(scores, is_ood):
    pos = [s for s, o in zip(scores, is_ood) if o]
    neg = [s for s, o in zip(scores, is_ood) if not o]
    total = 0.0
    for a in pos:
        for b in neg:
            total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(pos) * len(neg))


def average_precision(scores, positive):
    n_pos = sum(positive)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        flagged = [p for s, p in zip(scores, positive) if s >= t]
        tp = sum(flagged)
        recall = tp / n_pos
        ap += (recall - prev_recall) * (tp / len(flagged))
        prev_recall = recall
    return ap


def fpr_at_tpr(scores, is_ood, tpr):
    n_pos = sum(is_ood)
    n_neg = len(is_ood) - n_pos
    for t in sorted(set(scores), reverse=True):
        tp = sum(1 for s, o in zip(scores, is_ood) if o and s >= t)
        fp = sum(1 for s, o in zip(scores, is_ood) if not o and s >= t)
        if tp / n_pos >= tpr - 1e-12:
            return fp / n_neg
    raise AssertionError("unreachable")


def aurc_all_orders(uncertainty, errors):
    """AURC averaged over every ordering consistent with sorted uncertainty (brute force)."""
    import itertools

    n = len(errors)
    results = []
    for order in itertools.permutations(range(n)):
        if all(uncertainty[order[i]] <= uncertainty[order[i + 1]] for i in range(n - 1)):
            err, total = 0.0, 0.0
            for k, i in enumerate(order, start=1):
                err += errors[i]
                total += err / k
            results.append(total / n)
    return sum(results) / len(results)
