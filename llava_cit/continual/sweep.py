"""`llava-cit sweep`: a grid over settings (a method's strength, a learning rate), every point a whole continual run
scored on a validation split carved from each task's training data (llava_cit.data.holdout), never its test set.

Each point's run directory is out/<point>/ (a run that resumes like any other: rerunning the sweep finishes what is
missing); the table of points goes to out/sweep.json and out/sweep.md, best first by the final average accuracy on
the validation splits (the mean of the accuracy matrix's last row). That ranking needs no upper bound, so the points
run with `eval.upper_bound: false` (no extra adapter trained per stage) unless an override sets it.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llava_cit.config import RunConfig, apply_override, load_config
from llava_cit.tasks.registry import resolve_task
from llava_cit.util.atomic import write_json, write_text
from llava_cit.util.errors import UserError


@dataclass(frozen=True)
class Validation:
    fraction: float = 0.1  # of each task's training examples (after train_limit)
    min_count: int = 8
    seed: int = 0


def parse_grid(assignments: Sequence[str]) -> dict[str, list[str]]:
    """`--set-grid key=v1,v2,...` (repeatable) as {key: [v1, v2, ...]}; a one-line error for a malformed one."""
    grid: dict[str, list[str]] = {}
    for assignment in assignments:
        key, sep, values = assignment.partition("=")
        points = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not points:
            raise UserError(f"--set-grid {assignment!r}: expected key=value1,value2,... (e.g. method_args.strength=1,10)")
        if key.strip() in grid:
            raise UserError(f"--set-grid: key '{key.strip()}' given twice")
        grid[key.strip()] = points
    if not grid:
        raise UserError("a sweep needs at least one --set-grid key=value1,value2,...")
    return grid


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, in order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_name(point: dict[str, str]) -> str:
    """A folder name for a grid point, e.g. `strength=10` (the last part of each key)."""
    text = "_".join(f"{key.split('.')[-1]}={value}" for key, value in point.items())
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", text)


def validation_tasks(config: RunConfig, config_dir: Path | None, validation: Validation) -> list[dict[str, Any]]:
    """The config's task entries, each trained on its training data less a validation part, and tested on that part."""
    entries = []
    for entry in config.tasks:
        spec = resolve_task(entry, config_dir)
        wrap = {"type": "holdout", "source": dict(spec.train), "fraction": validation.fraction,
                "min_count": validation.min_count, "seed": validation.seed, "limit": config.train_limit}
        carved = dict(entry) if isinstance(entry, dict) else {"file": entry}  # a task name or a task file
        carved.update(train={**wrap, "part": "train"}, test={**wrap, "part": "validation"})
        entries.append(carved)
    return entries


def _markdown(rows: list[dict], keys: list[str], tasks: list[str]) -> str:
    head = ["rank", *keys, "final average (validation)", "BWT", *tasks, "run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def number(value):
        return "—" if value is None else f"{value:.3f}"

    for rank, row in enumerate(rows, 1):
        cells = [str(rank), *(row["point"][k] for k in keys), number(row["final_average"]), number(row["bwt"]),
                 *(number(row["final"].get(t)) for t in tasks), row["run_dir"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_sweep(base: dict, config_dir: Path | None, grid: dict[str, list[str]], out: Path,
              overrides: Sequence[str] = (), validation: Validation = Validation(),
              run: Callable[[RunConfig, Path], dict] | None = None, say=print) -> dict:
    """Train and score every grid point; writes out/sweep.json and out/sweep.md and returns the sweep's summary.
    `base`: the run config as a mapping; `run(config, run_dir)` trains one point (default: a ContinualRunner)."""
    overrides = ["eval.upper_bound=false", *overrides]  # the ranking reads accuracy only; an override may set it
    if run is None:
        from llava_cit.continual.runner import ContinualRunner, Progress

        def run(config, run_dir):
            return ContinualRunner(config, run_dir, config_dir=config_dir, progress=Progress(message=say)).run()

    first = load_config(None, list(overrides), base=copy.deepcopy(base))  # a bad override stops before anything runs
    configs = []
    for point in grid_points(grid):
        data = copy.deepcopy(base)
        for assignment in [*overrides, *(f"{k}={v}" for k, v in point.items())]:
            apply_override(data, assignment)
        data["tasks"] = validation_tasks(load_config(None, base=copy.deepcopy(data)), config_dir, validation)
        configs.append((point, load_config(None, base=data)))  # every point checked before the first trains
    rows = []
    for point, config in configs:
        run_dir = out / point_name(point)
        say(f"[sweep] {', '.join(f'{k}={v}' for k, v in point.items())}: run directory {run_dir}")
        results = run(config, run_dir)
        rows.append({"point": point, "run_dir": str(run_dir), "final_average": results.get("average"),
                     "bwt": results.get("bwt"), "final": results.get("final", {}), "tasks": results.get("tasks", [])})
    rows.sort(key=lambda r: -1.0 if r["final_average"] is None else -r["final_average"])
    names = rows[0]["tasks"] if rows else []
    summary = {"grid": grid, "overrides": list(overrides), "validation": asdict(validation),
               "scored_on": "a validation split of each task's training data (never its test set)",
               "method": first.method, "points": rows, "best": rows[0]["point"] if rows else None}
    if len(rows) > 1 and len({r["final_average"] for r in rows}) == 1:
        summary["warning"] = (f"every point scored the same on validation ({rows[0]['final_average']}): the grid "
                              f"may not reach the values where the setting matters; the first point is 'best' only "
                              f"by order")
        say(f"[sweep] warning: {summary['warning']}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", summary)
    write_text(out / "sweep.md", _markdown(rows, list(grid), names))
    return summary
