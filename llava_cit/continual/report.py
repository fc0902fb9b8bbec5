"""Tables and plots of continual runs, read back from their results.json."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llava_cit.continual.manifest import Manifest, inside_run
from llava_cit.continual.results import check_against_manifest
from llava_cit.util.errors import UserError
from llava_cit.util.text_files import read_utf8


def read_results(run_dir: str | Path) -> dict:
    """results.json, checked against the run's manifest (its scores, adapters and paths)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: no results.json (not a run directory, or no stage has finished)")
    inside_run(Path(run_dir), path.name, f"{path} (a link)")
    try:
        results = json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: line {err.lineno}: malformed JSON ({err.msg})") from None
    manifest = Manifest(Path(run_dir))  # the numbers shown are the ones the finished stages recorded
    for index in range(len(manifest.stages)):
        manifest.check_paths(index)
    check_against_manifest(results, manifest.stages, path)
    return results


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def method_table(results: dict) -> Table:
    tasks = results["tasks"]
    table = Table(title=f"{results['method']}: score after each stage (rows) on each task (columns)")
    table.add_column("after stage")
    for task in tasks:
        table.add_column(task, justify="right")
    table.add_column("switch acc.", justify="right")
    for i, row in enumerate(results["matrix"]):
        table.add_row(f"{i}: {tasks[i]}", *[_fmt(v) for v in row], _fmt(results["switch_accuracy"][i]))
    table.add_row("upper bound", *[_fmt(results["upper_bound"][t]) for t in tasks], "")
    table.add_row("untrained base", *[_fmt(results.get("base_model", {}).get(t)) for t in tasks], "")
    final_extra = final_extra_metrics(results)
    for name in sorted({m for values in final_extra.values() for m in values}):
        table.add_row(f"{name} (last stage)", *[_fmt(final_extra.get(t, {}).get(name)) for t in tasks], "")
    return table


def final_extra_metrics(results: dict) -> dict[str, dict[str, float | None]]:
    """{task: {metric: value}} of the extra metrics (e.g. HGen's constraint rate) after the last stage."""
    stages = results.get("extra_metrics") or []
    return stages[-1] if stages else {}


def comparison_table(runs: list[dict]) -> Table:
    tasks = runs[0]["tasks"]
    table = Table(title="final scores by method (after the last stage)")
    table.add_column("method")
    for task in tasks:
        table.add_column(task, justify="right")
    extra = sorted({(t, m) for r in runs for t, values in final_extra_metrics(r).items() for m in values})
    for task, name in extra:
        table.add_column(f"{task} {name}", justify="right")
    for column in ("average (MFN)", "MFT", "MAA", "BWT", "switch acc."):
        table.add_column(column, justify="right")
    for results in runs:
        final, final_extra = results["final"], final_extra_metrics(results)
        table.add_row(results["method"], *[_fmt(final.get(t)) for t in tasks],
                      *[_fmt(final_extra.get(t, {}).get(m)) for t, m in extra], _fmt(results["average"]),
                      _fmt(results.get("mft")), _fmt(results.get("maa")), _fmt(results["bwt"]),
                      _fmt(results["switch_accuracy"][-1]))
    return table


FIELD_SUMMARIES = (("MFT", "mft"), ("MFN", "mfn"), ("MAA", "maa"), ("BWT", "bwt"))
TABLE_FORMATS = ("table", "csv", "markdown")


def _percent(value) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def field_rows(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The table the continual instruction tuning papers print (MCITlib, HiDe-LLaVA, CoIN): one row per method, the
    final score of each task after the last stage, then MFT, MFN, MAA and BWT, all in percent (CIDEr x 100).
    A task's metric is named with it where it is not an accuracy-like rule (e.g. "ucit-flickr30k [cider]")."""
    tasks = runs[0]["tasks"]
    for results in runs[1:]:
        if results["tasks"] != tasks:
            raise UserError(f"the runs learned different tasks ({', '.join(tasks)} vs {', '.join(results['tasks'])}): "
                            "compare runs of one sequence")
    metrics = runs[0].get("metric") or {}
    header = ["method", *[f"{t} [{metrics[t]}]" if metrics.get(t) in ("cider",) else t for t in tasks],
              *[title for title, _ in FIELD_SUMMARIES]]
    rows = [[results["method"], *[_percent(results["final"].get(t)) for t in tasks],
             *[_percent(results.get(key)) for _, key in FIELD_SUMMARIES]] for results in runs]
    return header, rows


def field_table(runs: list[dict]) -> Table:
    header, rows = field_rows(runs)
    table = Table(title="final score per task after the last stage, MFT / MFN / MAA / BWT (%)")
    table.add_column(header[0])
    for column in header[1:]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def table_text(runs: list[dict], fmt: str) -> str:
    """The field table as CSV or as a Markdown (GitHub) table."""
    header, rows = field_rows(runs)
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows([header, *rows])
        return buffer.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    raise UserError(f"--format must be one of {', '.join(TABLE_FORMATS)}, got '{fmt}'")


def plot_relative_gain(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, gains = results["tasks"], results["relative_gain"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for j, task in enumerate(tasks):
        xs = [i for i in range(len(gains)) if gains[i][j] is not None]
        ax.plot(xs, [gains[i][j] for i in xs], marker="o", label=task)
    ax.set_xticks(range(len(tasks)), [f"{i}: {t}" for i, t in enumerate(tasks)], fontsize=8)
    ax.set_xlabel("after stage")
    ax.set_ylabel("relative gain (score / upper bound)")
    ax.set_title(f"{results['method']}")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_matrix(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = results["tasks"]
    data = np.array([[np.nan if v is None else v for v in row] for row in results["matrix"]], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(tasks), 1.2 + 0.8 * len(tasks)))
    image = ax.imshow(data, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_yticks(range(len(tasks)), [f"after {t}" for t in tasks], fontsize=8)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", color="white", fontsize=8)
    ax.set_title(f"{results['method']}: accuracy matrix", fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plots(run_dir: str | Path) -> list[Path]:
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    paths = [run_dir / "relative_gain.png", run_dir / "accuracy_matrix.png"]
    plot_relative_gain(results, paths[0])
    plot_matrix(results, paths[1])
    from llava_cit.continual.loss_curves import draw_loss_curves

    curves = draw_loss_curves(run_dir)
    return paths + ([curves] if curves else [])


def print_report(run_dirs: list[str | Path], console: Console | None = None, plots: bool = True) -> list[dict]:
    console = console or Console()
    runs = [read_results(d) for d in run_dirs]
    for run_dir, results in zip(run_dirs, runs):
        console.print(method_table(results))
        if plots:
            write_plots(run_dir)
    if len(runs) > 1:
        console.print(comparison_table(runs))
    if len({tuple(r["tasks"]) for r in runs}) == 1:
        console.print(field_table(runs))
    return runs


def export_report(run_dirs: list[str | Path], fmt: str, out: Path | None) -> str:
    """The field table of the runs as CSV or Markdown, written to `out` (atomically) when given; returns the text."""
    text = table_text([read_results(d) for d in run_dirs], fmt)
    if out is not None:
        from llava_cit.util.atomic import write_text

        write_text(out, text)
    return text


def print_seed_summary(summary: dict, console: Console) -> None:
    """The demo over several seeds: mean ± sd per method."""
    table = Table(title=f"over {summary['seeds']} seeds (mean ± sd)")
    first = next(iter(summary["methods"].values()), {})
    finals = [k for k in first if k.startswith("final:")]
    columns = [("first-task drop", "first_task_drop"), ("MFT", "mft"), ("MFN", "mfn"), ("MAA", "maa"), ("BWT", "bwt"),
               *[(k[len("final:"):] + " final", k) for k in finals], ("adapters/task", "adapters_per_task"),
               ("MB/task", "bytes_per_task"), ("train s", "train_seconds")]
    table.add_column("method")
    for title, _ in columns:
        table.add_column(title, justify="right")
    for method, values in summary["methods"].items():
        cells = []
        for _, key in columns:
            mean, sd = values.get(key, (float("nan"), 0.0))
            if key == "bytes_per_task":
                mean, sd = mean / 1e6, sd / 1e6
            digits = 1 if key in ("train_seconds", "bytes_per_task", "adapters_per_task") else 3
            cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}")
        table.add_row(method, *cells)
    console.print(table)
    for line in summary["switchcit_below_base"]:
        console.print(f"[yellow]warning:[/yellow] switchcit's {line}")
