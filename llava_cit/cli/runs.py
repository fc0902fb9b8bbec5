"""Commands that read a run directory without writing it: `report`, `status`, `route`."""

from __future__ import annotations

from pathlib import Path

import typer

from llava_cit.cli.app import app, console, quiet_libraries
from llava_cit.util.errors import UserError


@app.command(epilog="Examples:\n\n  llava-cit report runs/demo/switchcit runs/demo/seq-lora runs/demo/rehearsal\n\n"
                    "  llava-cit report runs/ucit/* --format markdown --out ucit.md\n\n"
                    "  llava-cit report runs/coin/switchcit runs/coin/seq-lora --format csv")
def report(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run directories."),
    plots: bool = typer.Option(True, help="Re-draw relative_gain.png and accuracy_matrix.png."),
    format_: str = typer.Option("table", "--format", help="table: the run tables and the field's table (final "
                                                          "score per task, MFT, MFN, MAA, BWT in %); csv or markdown: "
                                                          "only the field's table, as text."),
    out: Path | None = typer.Option(None, help="With --format csv|markdown: write the table to this file."),
) -> None:
    """Re-print the tables (and re-draw the plots) of finished runs, side by side; export the field's comparison
    table (percentages, per-task final scores, MFT/MFN/MAA/BWT) as CSV or Markdown."""
    from llava_cit.continual.report import TABLE_FORMATS, export_report, print_report

    if format_ not in TABLE_FORMATS:
        raise UserError(f"--format must be one of {', '.join(TABLE_FORMATS)}, got '{format_}'")
    if format_ == "table":
        if out is not None:
            raise UserError("--out needs --format csv or --format markdown")
        print_report(run_dirs, console, plots=plots)
        return
    text = export_report(run_dirs, format_, out)
    if out is None:
        typer.echo(text, nl=False)
    else:
        console.print(f"{format_} table of {len(run_dirs)} run(s) -> {out}")


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
    from llava_cit.util.text_files import read_utf8
    from switch import SwitchNetwork

    quiet_libraries()
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
