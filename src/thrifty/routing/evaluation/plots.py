"""PNG plots of the evaluation (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path

from .metrics import hull
from .pairs import PairResult
from .routerbench import BenchResult


def plot_routerbench(result: BenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, (cost, acc) in result.singles.items():
        ax.scatter([cost * 1000], [acc], marker="o", color="grey", s=18)
        ax.annotate(name.split("/")[-1][:18], (cost * 1000, acc), fontsize=6, alpha=0.8)
    for name, points in result.policies.items():
        if len(points) == 1:
            ax.scatter([points[0][0] * 1000], [points[0][1]], marker="*", s=120, label=name, zorder=5)
            continue
        curve = hull(points)
        ax.plot([c * 1000 for c, _ in curve], [a for _, a in curve], marker=".", label=name)
    ax.scatter([result.oracle[0] * 1000], [result.oracle[1]], marker="X", s=80, color="black", label="oracle")
    ax.set_xscale("log")
    ax.set_xlabel("average cost per prompt (USD per 1,000 prompts, log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title("RouterBench slice (ARC, MBPP, Winogrande), test split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pairs(results: list[PairResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.5), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        for name, curve in result.curves.items():
            style = "--" if name in ("random", "oracle") else "-"
            ax.plot([x * 100 for x, _ in curve], [y for _, y in curve], style, label=name)
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.axhline(0.8, color="grey", lw=0.5)
        ax.set_ylim(-0.2, 1.4)
        ax.set_title(f"{result.name} (GPT-4 vs Mixtral, n={result.n})")
        ax.set_xlabel("% calls to GPT-4")
        ax.set_ylabel("performance gap recovered")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
