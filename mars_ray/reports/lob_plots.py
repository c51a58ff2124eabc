"""One PNG page per family of the LOB-Bench section: score distributions, response curves, facts.

Inputs are ``lob_suite.compare_scores``'s result and pooled samples; nothing is computed
here but histograms.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mars_ray.reports.impact import CURVES, LAGS

COLOURS = {"real": "black", "lmm": "tab:blue", "baseline": "tab:orange"}


def _figure(panels: int, cols: int = 4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.0 * rows), squeeze=False)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    return fig, axes


def _save(fig: Any, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_scores(
    samples: Mapping[str, Mapping[str, np.ndarray]],
    result: Mapping[str, Any],
    path: Path,
    title: str = "",
) -> Path:
    """Each unconditional score's distributions overlaid, with its L1 per source and floor."""
    names = list(next(iter(samples.values())))
    fig, axes = _figure(len(names))
    for ax, name in zip(axes.flat, names, strict=False):
        values = {k: np.asarray(s[name], np.float64) for k, s in samples.items()}
        values = {k: v[np.isfinite(v)] for k, v in values.items() if np.isfinite(v).any()}
        if values:
            pooled = np.concatenate(list(values.values()))
            lo, hi = np.quantile(pooled, [0.005, 0.995])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 41)
            for k, v in values.items():
                ax.hist(
                    np.clip(v, lo, hi),
                    bins=bins,
                    density=True,
                    histtype="step",
                    color=COLOURS.get(k),
                    label=k,
                )
        row = result["scores"].get(name, {})
        l1 = ", ".join(f"{k} {d['l1']:.2f}" for k, d in row.items() if d.get("l1") is not None)
        ax.set_title(f"{name}\nL1: {l1}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path, title)


def plot_impact(result: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """The six response curves of every source, lag in events (log axis), ticks."""
    fig, axes = _figure(len(CURVES), cols=3)
    curves = result["impact"]["curves"]
    for ax, curve in zip(axes.flat, CURVES, strict=False):
        for k, c in curves.items():
            pts = [(lag, y) for lag, y in zip(LAGS, c[curve], strict=True) if y is not None]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.plot(x, y, marker="o", ms=3, color=COLOURS.get(k), label=k)
        ax.set_xscale("log")
        ax.set_title(curve, fontsize=9)
        ax.set_xlabel("lag (events)", fontsize=8)
        ax.set_ylabel("response (ticks)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path, title)


def plot_facts(result: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """A grid: fact by source, filled where the fact is present, with its statistic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    facts = result["stylized_facts"]
    sources = [k for k in next(iter(facts.values())) if k != "statistic"]
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * len(sources), 0.45 * len(facts) + 1.2))
    grid = np.array([[1.0 if facts[f][s] else 0.0 for s in sources] for f in facts])
    ax.imshow(grid, cmap="Greens", vmin=0, vmax=1.6, aspect="auto")
    for i, f in enumerate(facts):
        for j, s in enumerate(sources):
            stat = facts[f]["statistic"].get(s)
            ax.text(
                j, i, "-" if stat is None else f"{stat:.3g}", ha="center", va="center", fontsize=8
            )
    ax.set_xticks(range(len(sources)), sources)
    ax.set_yticks(range(len(facts)), list(facts), fontsize=8)
    return _save(fig, path, title or "stylized facts (green: present)")


def plot_pages(
    samples: Mapping[str, Mapping[str, np.ndarray]],
    result: Mapping[str, Any],
    png: Path,
    title: str = "",
) -> list[Path]:
    """The three pages beside ``png``: <stem>_scores.png, <stem>_impact.png, <stem>_facts.png."""
    stem = png.with_suffix("")
    return [
        plot_scores(samples, result, Path(f"{stem}_scores.png"), title),
        plot_impact(result, Path(f"{stem}_impact.png"), title),
        plot_facts(result, Path(f"{stem}_facts.png"), title),
    ]
