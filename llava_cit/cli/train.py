"""`llava-cit train`: run, resume or extend a continual sequence."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from llava_cit.cli.app import app, console, quiet_libraries, say


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
    from llava_cit.train.distributed import is_main_process
    from llava_cit.train.progress import TrainingBar

    quiet_libraries()
    run_config = load_config(config, set_)
    out = out or Path("runs") / config.stem
    main = is_main_process()  # under accelerate launch, rank 0 alone talks (and writes the run directory)
    bars = [TrainingBar(console)] if main else []  # one display per phase: ours, not the Trainer's tqdm as well
    runner = ContinualRunner(run_config, out, force=force, config_dir=config.parent,
                             progress=Progress(message=say if main else (lambda text: None), trainer_callbacks=bars,
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
