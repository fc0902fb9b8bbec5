"""`loss_curves.png`: the training loss of every stage, one panel per stage, from logs/train_log.jsonl."""

from __future__ import annotations

from pathlib import Path

from llava_cit.continual.figures import pyplot, save_png
from llava_cit.continual.train_log import read_train_log


def draw_loss_curves(run_dir: Path) -> Path | None:
    rows = [r for r in read_train_log(run_dir) if r.get("loss") is not None and r.get("kind", "adapter") == "adapter"]
    if not rows:
        return None
    plt = pyplot()

    stages = sorted({r["stage"] for r in rows})
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3.2), squeeze=False)
    for axis, stage in zip(axes[0], stages):
        points = {}
        for row in rows:
            if row["stage"] == stage:
                points[row["step"]] = row["loss"]  # a resumed stage logs some steps again: the last one counts
        steps = sorted(points)
        task = next(r["task"] for r in rows if r["stage"] == stage)
        axis.plot(steps, [points[s] for s in steps], marker=".", linewidth=1)
        axis.set_title(f"stage {stage}: {task}")
        axis.set_xlabel("step")
        axis.set_ylabel("training loss")
        axis.grid(alpha=0.3)
    method = rows[0].get("method", "")
    fig.suptitle(f"{run_dir.name} ({method})")
    fig.tight_layout()
    return save_png(fig, run_dir / "loss_curves.png")
