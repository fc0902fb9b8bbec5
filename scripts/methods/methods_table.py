"""The README's methods table, with every regularizer's strength chosen on validation data first.

For each track (default: vision and smollm2):
  1. for each method with a strength (`SWEEPS`), `llava-cit sweep`'s grid on the track's demo config, seed 0,
     scored on a validation split carved from each task's training data (llava_cit.continual.sweep), never the test set;
  2. every method (the vision-only ones left out of a text track) over seeds 0..N-1, the swept methods at the best
     strength, switchcit's own adapters as every method's upper bound (eval.upper_bound_from);
  3. the table over seeds: <out>/<track>/seeds_summary.json and <out>/<track>/table.md, printed as it comes.

Hours of CPU for the two tracks (3 seeds x 16 methods, plus the sweeps); it resumes where it stopped (every run
directory resumes):

    python scripts/methods/methods_table.py --out runs/methods-table
    python scripts/methods/methods_table.py --tracks vision --seeds 3 --methods ewc si switchcit
    python scripts/methods/methods_table.py --tracks smollm2 --grid ewc=100,1000,10000   # a grid of one's own
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from rich.console import Console

from llava_cit.config import load_config
from llava_cit.continual.demo import all_methods, demo_preset, seed_summary, switch_fallback
from llava_cit.continual.report import print_seed_summary
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.continual.sweep import Validation, run_sweep
from llava_cit.methods.registry import get_method
from llava_cit.methods.settings import own_settings
from llava_cit.util.atomic import write_json, write_text

# the setting each method's sweep varies, and its grid per track ("default": any other track). The grids differ
# because the importance scales do: stage 0's mean EWC Fisher is 1.6e-3 on the tiny LLaVA (2-task vision demo) and
# 2.9e-8 on SmolLM2-135M (its 2.4M LoRA parameters); MAS's mean sensitivity 3.2 and 2.8e3. A grid of the vision
# demo's values gave SmolLM2 three identical validation scores (EWC λ 100, 1000, 10000: the penalty changed nothing).
SWEEPS = {
    "ewc": ("method_args.strength", {"default": ["100", "1000", "10000", "100000"], "smollm2": ["1e6", "1e7", "1e8"]}),
    "tir": ("method_args.strength", {"default": ["1e6", "1e7", "1e8", "1e9"], "smollm2": ["1e6", "1e7", "1e8"]}),
    "mas": ("method_args.strength", {"default": ["0.1", "1", "10", "100"], "smollm2": ["1e-5", "1e-4", "1e-3"]}),
    "si": ("method_args.strength", {"default": ["0.1", "1", "10", "100"], "smollm2": ["0.1", "10", "1000"]}),
    "olora": ("method_args.orthogonality", {"default": ["0.05", "0.5", "5"]}),
}


def grid_for(track: str, method: str, sweeps: dict) -> tuple[str, list[str]]:
    """(the swept setting, its values) of `method` on `track`."""
    key, grids = sweeps[method]
    return key, grids.get(track, grids["default"])


def base_config(track: str, method: str, overrides: list[str]) -> dict:
    """The track's demo config for `method` (the preset's method_args only where the method has them)."""
    preset = demo_preset(track)
    preset["method_args"] = own_settings(get_method(method).settings_type, preset.get("method_args") or {})
    preset["method"] = method
    return preset


def chosen_settings(track: str, methods: list[str], out: Path, say, sweeps: dict | None = None
                    ) -> dict[str, list[str]]:
    """Per swept method, the overrides its validation sweep found best (swept once; a finished sweep is read back)."""
    sweeps = SWEEPS if sweeps is None else sweeps
    chosen = {}
    for method in methods:
        if method not in sweeps:
            continue
        key, values = grid_for(track, method, sweeps)
        table = out / "sweeps" / method / "sweep.json"
        if not table.is_file():
            run_sweep(base_config(track, method, []), None, {key: values}, table.parent,
                      switch_fallback(track, [], say), Validation(), say=say)
        best = json.loads(table.read_text(encoding="utf-8"))["best"]
        chosen[method] = [f"{k}={v}" for k, v in best.items()]
        say(f"[{track}] {method}: best on validation {', '.join(chosen[method])}")
    return chosen


def seed_runs(track: str, methods: list[str], seeds: int, chosen: dict[str, list[str]], out: Path, say) -> list[list[Path]]:
    """Every method over seeds 0..seeds-1; switchcit first, its adapters every method's upper bound."""
    ordered = sorted(methods, key=lambda m: m != "switchcit")
    by_seed = []
    for seed in range(seeds):
        runs = []
        for method in ordered:
            overrides = [*switch_fallback(track, [], say), f"seed={seed}", *chosen.get(method, [])]
            if method != "switchcit" and "switchcit" in ordered:
                overrides.append(f"eval.upper_bound_from={out / f'seed-{seed}' / 'switchcit'}")
            config = load_config(None, overrides, base=copy.deepcopy(base_config(track, method, [])))
            run_dir = out / f"seed-{seed}" / method
            say(f"[{track}] seed {seed} {method}: {run_dir}")
            ContinualRunner(config, run_dir, progress=Progress(message=say)).run()
            runs.append(run_dir)
        by_seed.append(runs)
    return by_seed


def markdown(summary: dict, chosen: dict[str, list[str]]) -> str:
    first = next(iter(summary["methods"].values()), {})
    finals = [k for k in first if k.startswith("final:")]
    columns = [("first-task drop", "first_task_drop"), ("MFN", "mfn"), ("MAA", "maa"), ("BWT", "bwt"),
               *[(k[len("final:"):] + " final", k) for k in finals], ("MB kept/task", "bytes_per_task"),
               ("train s", "train_seconds")]
    lines = ["| method | setting (chosen on validation) | " + " | ".join(t for t, _ in columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for method, values in summary["methods"].items():
        cells = []
        for _, key in columns:
            mean, sd = values.get(key, (float("nan"), 0.0))
            if key == "bytes_per_task":
                cells.append(f"{mean / 1e6:.1f}")
            elif key == "train_seconds":
                cells.append(f"{mean:.0f} ± {sd:.0f}")
            else:
                cells.append(f"{mean:.3f} ± {sd:.3f}")
        lines.append(f"| `{method}` | {', '.join(chosen.get(method, [])) or '—'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", nargs="+", default=["vision", "smollm2"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--out", type=Path, default=Path("runs/methods-table"))
    parser.add_argument("--grid", action="append", default=[], metavar="METHOD=V1,V2,...",
                        help="a method's sweep grid on every track instead of SWEEPS' (repeatable), e.g. ewc=100,1000,10000")
    args = parser.parse_args()
    sweeps = dict(SWEEPS)
    for item in args.grid:
        method, _, values = item.partition("=")
        if method not in SWEEPS or not values:
            parser.error(f"--grid {item!r}: expected METHOD=V1,V2,... with METHOD one of {', '.join(SWEEPS)}")
        values = [v.strip() for v in values.split(",") if v.strip()]
        sweeps[method] = (SWEEPS[method][0], {"default": values})  # every track
    console = Console()
    say = console.print
    for track in args.tracks:
        runnable, left_out = all_methods(track)
        methods = [m for m in args.methods if m not in left_out] if args.methods else runnable
        out = args.out / track
        chosen = chosen_settings(track, methods, out, say, sweeps)
        summary = seed_summary(seed_runs(track, methods, args.seeds, chosen, out, say))
        summary["chosen_on_validation"] = chosen
        write_json(out / "seeds_summary.json", summary)
        write_text(out / "table.md", markdown(summary, chosen))
        print_seed_summary(summary, console)
        say(f"[{track}] table in {out / 'table.md'}")


if __name__ == "__main__":
    main()
