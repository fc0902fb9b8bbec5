"""`llava-cit sweep`: choose a setting (a regularizer's strength, ...) on validation splits of the training data."""

from __future__ import annotations

from pathlib import Path

import typer

from llava_cit.cli.app import app, console, quiet_libraries, say


@app.command(epilog="Examples:\n\n  llava-cit sweep my.yaml --set method=ewc --set-grid method_args.strength=1,10,100\n\n"
                    "  llava-cit sweep demo:vision --set method=si --set-grid method_args.strength=0.1,1,10 "
                    "--out runs/sweep-si\n\n"
                    "  llava-cit sweep my.yaml --set-grid train.lr=1e-4,2e-4 --set-grid method_args.strength=10,100   # 4 "
                    "points")
def sweep(
    config: str = typer.Argument(..., help="YAML run config, or demo:<track> (a demo track's config)."),
    set_grid: list[str] = typer.Option([], "--set-grid", help="key=value1,value2,... (repeat the option: every "
                                                              "combination is a point)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value at every point (dotted key=value)."),
    out: Path = typer.Option(None, help="The points' run directories, sweep.json and sweep.md (default: "
                                        "runs/sweep-<config name>)."),
    validation: float = typer.Option(0.1, min=0.0, max=1.0, help="Fraction of each task's training examples held "
                                                                 "out to score the points (never the test set)."),
    min_validation: int = typer.Option(8, min=1, help="At least this many held-out examples per task."),
) -> None:
    """Train every point of a grid over settings and rank them on validation splits carved from the training data."""
    import yaml

    from llava_cit.config import load_config
    from llava_cit.continual.sweep import Validation, parse_grid, run_sweep
    from llava_cit.util.errors import UserError
    from llava_cit.util.text_files import read_utf8

    grid = parse_grid(set_grid)
    if not 0 < validation < 1:
        raise UserError(f"--validation {validation}: must lie strictly between 0 and 1")
    quiet_libraries()
    if config.startswith("demo:"):
        from llava_cit.continual.demo import demo_preset, switch_fallback
        from llava_cit.methods.registry import get_method
        from llava_cit.methods.settings import own_settings

        track = config[len("demo:"):]
        base, overrides, config_dir, name = demo_preset(track), switch_fallback(track, set_, say), None, f"demo-{track}"
        method = get_method(load_config(None, overrides, base=base).method)  # the preset's method_args it has
        base["method_args"] = own_settings(method.settings_type, base.get("method_args") or {})
    else:
        path = Path(config)
        load_config(path)  # a missing or malformed file is a one-line error
        base, overrides, config_dir, name = yaml.safe_load(read_utf8(path)) or {}, list(set_), path.parent, path.stem
    out = out or Path("runs") / f"sweep-{name}"
    summary = run_sweep(base, config_dir, grid, out, overrides, Validation(validation, min_validation), say=say)
    console.print((out / "sweep.md").read_text(encoding="utf-8"))
    best = ", ".join(f"{k}={v}" for k, v in summary["best"].items())
    say(f"best on validation: {best}; table in {out / 'sweep.json'} and {out / 'sweep.md'}")
