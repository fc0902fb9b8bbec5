"""The Typer application every command registers on, its console and the library quieting they share."""

from __future__ import annotations

import logging
import os
import time

import typer
from rich.console import Console

app = typer.Typer(
    help="Continual instruction tuning of LLaVA and text models without forgetting (SwitchCIT).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console()


def quiet_libraries() -> None:
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


def say(text: str) -> None:
    from rich.markup import escape

    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {escape(text)}", soft_wrap=True, highlight=False)

