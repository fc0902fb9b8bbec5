"""What the toolkit knows: `methods` (and their settings), `sequences` (the field's task sequences) and `vocab` (a tiny
model's words)."""

from __future__ import annotations

import typer

from llava_cit.cli.app import app
from llava_cit.util.errors import UserError


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


@app.command(epilog="Examples:\n\n  llava-cit sequences\n\n  llava-cit sequences ucit")
def sequences(
    name: str | None = typer.Argument(None, help="A sequence: print its tasks in order, each with its metric."),
) -> None:
    """The task sequences a config's `tasks:` can name (UCIT, CoIN, MLLM-DCL and their CPU miniatures), one line each;
    `tasks: [ucit]` trains the sequence's tasks in its published order."""
    from llava_cit.tasks.catalog import TASKS
    from llava_cit.tasks.registry import known_tasks  # noqa: F401  (loads the shipped sequences)
    from llava_cit.tasks.sequences import SEQUENCES

    if name is None:
        for shown in SEQUENCES.names():
            sequence = SEQUENCES.get(shown)
            where = f"$LLAVA_CIT_DATA/{sequence.data}" if sequence.data else "synthetic"
            typer.echo(f"{shown:<14} {len(sequence.tasks)} tasks, {where}: {sequence.description}")
        return
    if name not in SEQUENCES:
        raise UserError(f"unknown task sequence '{name}' (known: {', '.join(SEQUENCES.names())})")
    sequence = SEQUENCES.get(name)
    typer.echo(f"{name}: {sequence.description} [{sequence.source}]")
    for position, task_name in enumerate(sequence.tasks, 1):
        task = TASKS.get(task_name)
        typer.echo(f"  {position}. {task_name:<22} {task.metric:<22} {task.description}")


@app.command(epilog="Examples:\n\n  llava-cit vocab tiny-llava\n\n  llava-cit vocab tiny-bloom | grep -x summarize")
def vocab(model: str = typer.Argument(..., help="A built-in tiny model: tiny-llava, tiny-bloom, tiny-opt or "
                                                         "tiny-llava-seq.")) -> None:
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
