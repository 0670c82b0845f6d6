"""What a run writes as it goes: per-epoch and per-step CSV logs (cut back on resume) and the loss curves."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

LOSS_KEYS = ("total", "fusion", "int", "grad", "ssim", "color", "csc", "agreement", "teacher_a")


EPOCH_COLUMNS = (
    "epoch", "stage", "w", "lr", "steps", "skipped_steps",
    *(f"train_{k}" for k in LOSS_KEYS), "val_loss", "val_fusion", "val_csc",
    "grad_norm_fusion", "grad_norm_csc", "proj_coef_mean", "best_val_loss", "bad_epochs",
    "images_per_s", "epoch_time_s",
)  # fmt: skip


STEP_COLUMNS = (
    "global_step", "epoch", "step", "stage", "w", "lr", *LOSS_KEYS, "grad_norm",
    "gn_fusion", "gn_csc", "proj_coef", "proj_coef_mean", "images_per_s",
)  # fmt: skip


class CsvLog:
    """Append-only CSV with a fixed header; on resume, rows past the resume point are dropped."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_row: Any = None) -> None:
        self.path, self.columns = path, columns
        rows = []
        if path.is_file() and keep_row is not None:
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if keep_row(r)]
        if keep_row is not None or not path.is_file():
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _fmt(row.get(k)) for k in self.columns})


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def plot_curves(metrics_csv: Path, out_png: Path, task_title: str = "cross-segmentation consistency") -> None:
    """Loss, CSC (``task_title``: the Stage II task loss) and w curves per epoch with the stage switch
    marked (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with metrics_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return

    def col(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else math.nan for r in rows]

    epochs = col("epoch")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in ("train_total", "train_fusion", "val_loss", "val_fusion"):
        axes[0].plot(epochs, col(name), marker=".", label=name)
    axes[0].set_title("loss")
    for name in ("train_csc", "val_csc", "train_agreement"):
        axes[1].plot(epochs, col(name), marker=".", label=name)
    axes[1].set_title(task_title)
    for name in ("w", "proj_coef_mean"):
        axes[2].plot(epochs, col(name), marker=".", label=name)
    axes[2].set_title("CSC weight w, projection coefficient")
    stages = col("stage")
    switch = next((e for e, s in zip(epochs, stages, strict=True) if s == 2), None)
    for ax in axes:
        if switch is not None and switch > epochs[0]:
            ax.axvline(switch - 0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
