"""`llava-cit eval`: batch evaluation of a run, a bare model or existing predictions."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from llava_cit.cli.app import app, console, quiet_libraries, say
from llava_cit.util.errors import UserError

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
    batch_size: str = typer.Option("16", help="Samples per generate call, or auto: the largest that fits the GPU "
                                              "(16 on a CPU), halved on out-of-memory without losing answers."),
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
    image_aspect_ratio: str = typer.Option("auto", help="Bare --model only: auto (pad for LLaVA-1.5 processors, the "
                                                        "processor's own otherwise), pad or crop. --run uses the run's."),
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
    from llava_cit.evaluation.batch_size import parse_batch_size
    from llava_cit.evaluation.identity import claim, default_output, producer, run_checksums
    from llava_cit.evaluation.items import load_benchmark
    from llava_cit.evaluation.report import print_scores
    from llava_cit.util.progress_display import ItemProgress
    from llava_cit.util.run_lock import DirectoryLock
    from llava_cit.util.run_log import RunLog

    batch_size = parse_batch_size(batch_size)

    quiet_libraries()
    if sum(x is not None for x in (model, run, predictions)) != 1:
        raise UserError("choose exactly one of --model, --run (optionally with --adapter) or --predictions")
    if adapter and not run:
        raise UserError("--adapter needs --run")
    if image_aspect_ratio not in ("auto", "pad", "crop"):
        raise UserError(f"--image-aspect-ratio must be auto, pad or crop, got '{image_aspect_ratio}'")
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
    from llava_cit.serve.run_server import RunServer, bare_server

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
            claim(out, identity, force, say=say)
            log = RunLog(out / "run.log", echo=say)
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
