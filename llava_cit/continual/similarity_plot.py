"""`task_similarity.png`: each new task's similarity to every earlier task (llava_cit.methods.task_similarity),
as recorded in the manifest by methods that measure it."""

from __future__ import annotations

from pathlib import Path

from llava_cit.continual.figures import pyplot, save_png


def draw_task_similarity(run_dir: Path, stages: list[dict]) -> Path | None:
    tasks = [s["task"] for s in stages]
    if not any(s.get("task_similarity") for s in stages) or len(tasks) < 2:
        return None
    plt = pyplot()

    grid = [[float("nan")] * len(tasks) for _ in tasks]
    for i, s in enumerate(stages):
        grid[i][i] = 1.0
        for earlier, values in (s.get("task_similarity") or {}).items():
            j = tasks.index(earlier)
            grid[i][j] = grid[j][i] = values["similarity"]
    fig, axis = plt.subplots(figsize=(1.2 * len(tasks) + 2, 1.0 * len(tasks) + 1.5))
    image = axis.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    axis.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    axis.set_yticks(range(len(tasks)), tasks)
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            if grid[i][j] == grid[i][j]:  # not NaN
                axis.text(j, i, f"{grid[i][j]:.2f}", ha="center", va="center", color="w" if grid[i][j] < 0.6 else "k")
    fig.colorbar(image, ax=axis, label="similarity (retained instructions and answers)")
    axis.set_title(f"{run_dir.name}: task similarity")
    fig.tight_layout()
    return save_png(fig, run_dir / "task_similarity.png")
