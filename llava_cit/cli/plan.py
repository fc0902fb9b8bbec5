"""`llava-cit plan`: a run's parameters, memory, tokens, steps and evaluation work before it runs."""

from __future__ import annotations

from pathlib import Path

import typer

from llava_cit.cli.app import app, console, quiet_libraries


@app.command(epilog="Examples:\n\n  llava-cit plan scripts/configs/llava15_paper_ret0.01pct.yaml --gpus 8 --gpu-memory 80\n\n"
                    "  llava-cit plan my.yaml --gpu-memory 24 --tokens-per-second 2500 --eval-samples-per-second 6\n\n"
                    "  llava-cit plan scripts/configs/qwen25vl7b_gqa_ocrvqa.yaml --set model=scripts/bench/qwen2.5-vl-7b "
                    "--image-size 480x640")
def plan(
    config_file: Path = typer.Argument(..., help="A run config (YAML)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value, e.g. --set train.batch_size=4"),
    gpus: int = typer.Option(1, min=1, help="GPUs training together."),
    gpu_memory: float | None = typer.Option(None, help="GB per GPU: say which set-ups fit."),
    tokens_per_second: float | None = typer.Option(None, help="Measured training tokens/s per GPU (for times)."),
    eval_samples_per_second: float | None = typer.Option(None, help="Measured evaluation samples/s (for times)."),
    tokens_per_sample: int | None = typer.Option(None, help="Tokens per training example (default: 256 + the "
                                                            "image tokens, at most train.max_length)."),
    image_size: str | None = typer.Option(None, help="HEIGHTxWIDTH of the images, for families whose image tokens "
                                                     "depend on it (Qwen-VL, InternVL, LLaVA-OneVision, Idefics3; "
                                                     "default 480x640)"),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Parameters, peak memory per GPU, tokens, steps and evaluation work of a run, before it runs."""
    import json as json_module

    import torch
    from rich.table import Table

    from llava_cit.config import load_config
    from llava_cit.train.planning import plan as make_plan

    quiet_libraries()
    size = _image_size(image_size) if image_size else None
    result = make_plan(load_config(config_file, set_), gpus, gpu_memory, tokens_per_second, eval_samples_per_second,
                       tokens_per_sample, config_file.parent, size)
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
                  f"{b['global']} global; ~{b['tokens_per_sample']} tokens per example"
                  + (f" ({result['image_tokens']} of them the image's)" if result["image_tokens"] else ""))
    memory = Table(title="estimated peak memory per GPU (a formula: llava_cit/train/planning.py)")
    memory.add_column("set-up")
    memory.add_column("GB", justify="right")
    memory.add_column("gradient checkpointing", justify="center")
    memory.add_column("fits" if gpu_memory else "", justify="center")
    for label, gb in result["peak_memory_gb_per_gpu"].items():
        fit = result["fits"].get(label)
        memory.add_row(label, f"{gb:.1f}", "on" if result["gradient_checkpointing"][label] else "off",
                       "" if fit is None else ("yes" if fit else "[red]no[/red]"))
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


def _image_size(text: str) -> tuple[int, int]:
    from llava_cit.util.errors import UserError

    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--image-size expects HEIGHTxWIDTH in pixels, e.g. 480x640; got '{text}'") from None
    if height < 1 or width < 1:
        raise UserError(f"--image-size must be positive, got '{text}'")
    return height, width
