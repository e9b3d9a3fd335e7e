"""``out/metrics.png``: loss and learning rate over the steps of a run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lightly_train.data.publish import atomic_path

logger = logging.getLogger(__name__)


def plot_metrics(metrics: Path, path: Path) -> Path | None:
    """Draws the step rows of ``metrics.jsonl`` (loss and lr against step) to
    ``path``; returns None, with one log line, when matplotlib is not installed
    or there are no step rows.

    Example:
        >>> plot_metrics(Path("out/run/metrics.jsonl"), Path("out/run/metrics.png"))
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        from matplotlib import pyplot as plt
    except ImportError:
        logger.info(
            "No metrics.png: it needs matplotlib (pip install 'lightly-train[viz]')."
        )
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    rows = [r for r in rows if "lr" in r and r.get("loss") is not None]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
    loss_ax.plot(steps, [r["loss"] for r in rows], color="tab:blue")
    loss_ax.set_ylabel("train loss")
    lr_ax.plot(steps, [r["lr"] for r in rows], color="tab:orange")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("step")
    for ax in (loss_ax, lr_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
