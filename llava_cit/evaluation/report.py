"""Print a scores.json in the benchmark's official layout."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_scores(scores: dict, console: Console) -> None:
    table = Table(title=f"{scores['benchmark']} ({scores['scored']} of {scores['samples']} samples scored)")
    table.add_column("category")
    table.add_column("score", justify="right")
    if "per_type" in scores:  # OCRBench
        for name, entry in scores["per_type"].items():
            if entry["total"]:
                table.add_row(name, f"{entry['correct']} / {entry['total']}")
        rec = scores["Text Recognition"]
        table.add_row("Text Recognition", f"{rec['correct']} / {rec['total']}", style="bold")
        final = scores["Final Score"]
        table.add_row("Final Score", f"{final['correct']} / {final['total']}", style="bold")
        acc = scores["Scene Text-centric VQA accuracy"]
        if acc is not None:
            table.add_row("Scene Text-centric VQA accuracy", f"{acc:.4f}")
        if final["total"] != 1000:  # a subset of the file: the official script reports accuracy per source dataset
            for name, entry in scores.get("per_dataset", {}).items():
                table.add_row(f"dataset: {name}", f"{entry['accuracy']:.4f} ({entry['correct']} / {entry['total']})")
    elif "metric" in scores:  # a registered task: its metric's mean, then its extra metrics
        for name, key in [(scores["metric"], "score")] + [(k, k) for k in scores if k.endswith("_rate")]:
            table.add_row(name, "—" if scores[key] is None else f"{scores[key]:.4f}", style="bold")
    else:
        table.add_row("accuracy", "—" if scores["accuracy"] is None else f"{scores['accuracy']:.4f}", style="bold")
        for kind, groups in scores.get("by_type", {}).items():
            for name, entry in groups.items():
                table.add_row(f"{kind}: {name}", f"{entry['accuracy']:.4f} ({entry['total']})")
    console.print(table)
    if scores["bad_samples"]:
        console.print(f"{len(scores['bad_samples'])} unreadable/missing samples ({scores['bad_policy']}), "
                      f"first: {scores['bad_samples'][0]['id']}: {scores['bad_samples'][0]['error']}",
                      soft_wrap=True, highlight=False)
    if scores["missing_predictions"]:
        console.print(f"{scores['missing_predictions']} samples have no prediction (scored as wrong)", highlight=False)
    if scores.get("bad_lines"):
        first = scores["bad_lines"][0]
        console.print(f"{len(scores['bad_lines'])} malformed prediction lines skipped (--skip-bad; their samples have no "
                      f"prediction), first: line {first['line']}: {first['error']}", soft_wrap=True, highlight=False)
