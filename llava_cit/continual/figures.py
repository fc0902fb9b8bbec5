"""Run-directory figures: matplotlib without a display, each PNG written under a temporary name and renamed."""

from __future__ import annotations

from pathlib import Path

from llava_cit.util.atomic import writing


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 100) -> Path:
    plt = pyplot()
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path):
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path
