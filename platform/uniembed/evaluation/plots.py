"""The report's plots: gold vs best-distractor score histograms and the gold-rank histogram.

Both write PNG files with matplotlib's Agg backend (the job runs without a display).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Rank bins for the gold-rank histogram: exact ranks 1-5, then widening bins.
_RANK_BINS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 20), (21, 50), (51, 100))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: the job runs without a display
    import matplotlib.pyplot as plt

    return plt


def plot_score_distributions(
    tasks: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: Path
) -> None:
    """One histogram panel per task: gold scores vs best-distractor scores.

    ``tasks`` maps a task to (gold_scores, best_distractor_scores, primary score).
    """
    plt = _pyplot()
    cols = min(6, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    # A lone panel gets room to read; grids (MMEB's 36 tasks) use smaller panels.
    w, h = (5.5, 3.6) if len(tasks) == 1 else (3.4, 2.7)
    # The constrained layout fits labels exactly but costs seconds per panel on big grids;
    # those get fixed margins instead.
    small = len(tasks) <= cols
    fig, axes = plt.subplots(
        nrows,
        cols,
        figsize=(w * cols, h * nrows),
        squeeze=False,
        layout="constrained" if small else None,
    )
    for ax, (name, (gold, best, score)) in zip(axes.flat, tasks.items()):
        both = np.concatenate([gold, best])
        lo, hi = float(both.min()), float(both.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 31)
        # stairs over precomputed counts: far cheaper than ax.hist's one patch per bar.
        for values, color, label in (
            (gold, "tab:green", "gold"),
            (best, "tab:red", "best distractor"),
        ):
            counts = np.histogram(values, bins)[0]
            ax.stairs(counts, bins, fill=True, alpha=0.55, color=color, label=label)
        ax.set_title(f"{name} ({100 * score:.1f}%)", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("queries", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("cosine score (gold vs the best-scoring distractor, per query)", fontsize=9)
    if not small:
        fig.subplots_adjust(
            left=0.04, right=0.99, bottom=0.5 / (h * nrows), top=1 - 0.35 / (h * nrows)
        )
        fig.subplots_adjust(wspace=0.25, hspace=0.45)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_gold_ranks(ranks: Mapping[str, np.ndarray], path: Path) -> None:
    """Share of queries (all tasks pooled) whose gold landed in each rank bin."""
    plt = _pyplot()
    pooled = np.concatenate(list(ranks.values()))
    labels = [str(a) if a == b else f"{a}-{b}" for a, b in _RANK_BINS] + [f">{_RANK_BINS[-1][1]}"]
    counts = [np.count_nonzero((pooled >= a) & (pooled <= b)) for a, b in _RANK_BINS]
    counts.append(np.count_nonzero(pooled > _RANK_BINS[-1][1]))
    shares = 100 * np.array(counts) / pooled.shape[0]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bars = ax.bar(labels, shares, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xlabel("gold rank")
    ax.set_ylabel("% of queries")
    ax.set_title(f"Gold rank over {pooled.shape[0]} queries, {len(ranks)} task(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
