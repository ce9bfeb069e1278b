"""The calibration plot and the Lorenz curve, as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from steps.metrics import lorenz_curve


def calibration_plot(table: pd.DataFrame, title: str, path: Path) -> None:
    """Mean observed vs mean predicted frequency per bin of increasing prediction."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    x = (table["bin"] + 0.5) / len(table)
    ax.plot(x, table["predicted_frequency"], "o-", label="predicted", color="tab:blue")
    ax.plot(x, table["observed_frequency"], "s--", label="observed", color="tab:orange")
    if "true_frequency" in table:
        ax.plot(x, table["true_frequency"], "x:", label="true", color="tab:green", zorder=3)
    ax.set(
        xlabel=f"fraction of exposure, sorted by predicted frequency ({len(table)} bins)",
        ylabel="mean frequency (claims per year)",
        title=title,
        xlim=(0, 1),
    )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def lorenz_plot(
    claims: np.ndarray,
    exposure: np.ndarray,
    rankings: dict[str, np.ndarray],
    ginis: dict[str, float],
    title: str,
    path: Path,
) -> None:
    """Lorenz curves of cumulated claims against cumulated exposure, one per ranking."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    for label, ranking in rankings.items():
        x, y = lorenz_curve(claims, exposure, ranking)
        step = max(1, len(x) // 2000)
        ax.plot(x[::step], y[::step], label=f"{label} (Gini {ginis[label]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="random (Gini 0)")
    ax.set(
        xlabel="cumulated share of exposure (safest first)",
        ylabel="cumulated share of claims",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
