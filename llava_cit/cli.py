"""The `llava-cit` command line (Typer)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from llava_cit.errors import UserError
from switch.errors import SwitchError

app = typer.Typer(
    help="Continual instruction tuning of LLaVA and text models without forgetting (SwitchCIT).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console()


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if os.environ.get("LLAVA_CIT_THREADS"):  # e.g. 1 on a CPU shared with other jobs
        torch.set_num_threads(int(os.environ["LLAVA_CIT_THREADS"]))

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("peft").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")


def _say(text: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}", soft_wrap=True, highlight=False)


@app.command(epilog="Examples:\n\n  llava-cit demo\n\n  llava-cit demo --track text\n\n"
                    "  llava-cit demo --track text --method switchcit --method full-sft --out runs/text")
def demo(
    track: str = typer.Option("vision", help="vision: tiny LLaVA, two image tasks; text: tiny BLOOM, three CT0-style "
                                             "text tasks."),
    out: Path = typer.Option(None, help="Where the per-method run directories go (default runs/demo, runs/demo-text)."),
    method: list[str] = typer.Option(["switchcit", "seq-lora", "rehearsal"], help="Methods to compare."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value, e.g. --set train.epochs=3"),
    force: bool = typer.Option(False, help="Move an existing run of a different config aside and start over."),
) -> None:
    """Tiny model, synthetic tasks, several methods: forgetting vs. SwitchCIT, offline on a CPU."""
    from llava_cit.continual.report import print_report
    from llava_cit.demo import DEMO_CONFIGS, run_demo

    if track not in DEMO_CONFIGS:
        raise UserError(f"unknown demo track '{track}' (known: {', '.join(DEMO_CONFIGS)})")
    _quiet_libraries()
    started = time.perf_counter()
    out = out or Path("runs/demo" if track == "vision" else "runs/demo-text")
    run_dirs = run_demo(out, method, set_, force, say=_say, track=track)
    print_report(run_dirs, console)
    _say(f"done in {time.perf_counter() - started:.0f} s; results.json and plots in {', '.join(map(str, run_dirs))}")


@app.command(epilog="Examples:\n\n  llava-cit train scripts/configs/demo_switchcit.yaml --out runs/a\n\n"
                    "  llava-cit train cfg.yaml --out runs/a --set train.epochs=2 --set method=rehearsal")
def train(
    config: Path = typer.Argument(..., help="YAML run config."),
    out: Path = typer.Option(None, help="Run directory (default: runs/<config name>)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value (dotted key=value)."),
    force: bool = typer.Option(False, help="Move an existing run of a different config aside and start over."),
) -> None:
    """Run (or resume, or extend) a continual sequence; re-running on the same --out resumes."""
    from llava_cit.config import load_config
    from llava_cit.continual.report import print_report
    from llava_cit.continual.runner import ContinualRunner, Progress

    _quiet_libraries()
    run_config = load_config(config, set_)
    out = out or Path("runs") / config.stem
    runner = ContinualRunner(run_config, out, force=force, config_dir=config.parent,
                             progress=Progress(message=_say, show_trainer_bars=True))
    runner.run()
    print_report([out], console)


@app.command(epilog="Example: llava-cit report runs/demo/switchcit runs/demo/seq-lora runs/demo/rehearsal")
def report(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run directories."),
    plots: bool = typer.Option(True, help="Re-draw relative_gain.png and accuracy_matrix.png."),
) -> None:
    """Re-print the tables (and re-draw the plots) of finished runs, side by side."""
    from llava_cit.continual.report import print_report

    print_report(run_dirs, console, plots=plots)


@app.command(epilog='Examples:\n\n  llava-cit route runs/demo/switchcit/switch/stage-01 "What is written on the sign?"\n\n'
                    "  llava-cit route SWITCH_DIR --file instructions.txt")
def route(
    switch_dir: Path = typer.Argument(..., help="A saved switch directory."),
    instructions: list[str] | None = typer.Argument(None, help="Instructions to route."),
    file: Path | None = typer.Option(None, help="A file with one instruction per line."),
) -> None:
    """Print the task (or 'none': unknown, served by the bare base) and confidence for each instruction."""
    from switch import SwitchNetwork

    _quiet_libraries()
    texts = list(instructions or [])
    if file is not None:
        if not file.is_file():
            raise UserError(f"file not found: {file}")
        texts += [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise UserError("no instructions given (arguments or --file)")
    switch = SwitchNetwork.load(switch_dir)
    for text, (label, confidence) in zip(texts, switch.predict(texts)):
        typer.echo(f"{label or 'none'}\t{confidence:.3f}\t{text}")


EVAL_EPILOG = """Examples:

  llava-cit eval --benchmark ocrbench --data OCRBench/OCRBench.json --images OCRBench/OCRBench_Images --run runs/gqa-ocr

  llava-cit eval --benchmark gqa --data testdev_balanced_questions.json --images gqa/images --model llava-hf/llava-1.5-7b-hf

  llava-cit eval --benchmark ocrbench --data hf:echo840/OCRBench --run runs/x --adapter ocrvqa --limit 50

  llava-cit eval --benchmark ocrbench --data OCRBench.json --predictions other_tool.jsonl
"""


@app.command("eval", epilog=EVAL_EPILOG)
def eval_(
    benchmark: str = typer.Option(..., help="gqa, ocrbench, ocrvqa, or any registered task / task file."),
    data: str | None = typer.Option(None, help="Annotation file, or hf:<dataset id>."),
    images: str | None = typer.Option(None, help="Images root (image paths may not escape it)."),
    model: str | None = typer.Option(None, help="A bare model: Hub id, local path or tiny spec."),
    run: Path | None = typer.Option(None, help="A run directory: routed by its switch (switchcit)."),
    adapter: str | None = typer.Option(None, help="With --run: serve every query with this task's adapter."),
    predictions: Path | None = typer.Option(None, help="Score an existing predictions JSONL; no model."),
    out: Path | None = typer.Option(None, help="Output directory (predictions.jsonl, scores.json)."),
    batch_size: int = typer.Option(16, help="Samples per generate call."),
    max_new_tokens: int = typer.Option(32, help="Generation budget per answer."),
    limit: int | None = typer.Option(None, help="Only the first N samples (smoke runs)."),
    skip_bad: bool = typer.Option(False, help="Exclude unreadable/missing images from the score (default: wrong)."),
    dtype: str | None = typer.Option(None, help="bfloat16, float16, float32 (bare --model only)."),
    load_in_4bit: bool = typer.Option(False, help="4-bit QLoRA loading (CUDA only; bare --model only)."),
) -> None:
    """Batch evaluation with the official scoring; resumable (re-run to continue)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from llava_cit.evaluation.batch import load_external_predictions, run_predictions, score_predictions
    from llava_cit.evaluation.items import load_benchmark
    from llava_cit.evaluation.report import print_scores

    _quiet_libraries()
    if sum(x is not None for x in (model, run, predictions)) != 1:
        raise UserError("choose exactly one of --model, --run (optionally with --adapter) or --predictions")
    if adapter and not run:
        raise UserError("--adapter needs --run")
    bench = load_benchmark(benchmark, data, images)
    if predictions is not None:
        if not predictions.is_file():
            raise UserError(f"predictions file not found: {predictions}")
        scores = score_predictions(bench, load_external_predictions(predictions), out, skip_bad, limit)
        print_scores(scores, console)
        return
    from llava_cit.serving import RunServer, bare_server

    server = RunServer(run, adapter) if run else bare_server(model, dtype, load_in_4bit)
    source = (run.name + (f"-{adapter}" if adapter else "")) if run else Path(model).name
    out = out or Path("evals") / f"{bench.name}-{source}"
    total = min(limit, len(bench.items)) if limit else len(bench.items)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        job = bar.add_task(bench.name, total=total)
        rows = run_predictions(bench, server, out, batch_size, max_new_tokens, limit,
                               advance=lambda n: bar.advance(job, n))
    scores = score_predictions(bench, rows, out, skip_bad, limit)
    print_scores(scores, console)
    _say(f"predictions in {out / 'predictions.jsonl'}, scores in {out / 'scores.json'}")


def main() -> None:
    try:
        app()
    except (UserError, SwitchError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
