"""`llava-cit export`: a run in another serving system's format (vLLM's multi-LoRA)."""

from __future__ import annotations

from pathlib import Path

import typer

from llava_cit.cli.app import app, quiet_libraries, say
from llava_cit.util.errors import UserError

EXPORT_EPILOG = """Examples:

  llava-cit export runs/gqa-ocr --format vllm --out exports/gqa-ocr

  llava-cit serve runs/gqa-ocr --engine vllm --export-dir exports/gqa-ocr

The run's adapters must be plain LoRA: a run that trains a per-task projector copy (lora.train_projector: true,
modules_to_save) is refused; train with lora.train_projector: false to export.
"""


@app.command(epilog=EXPORT_EPILOG)
def export(
    run: Path = typer.Argument(..., help="A finished run directory."),
    format: str = typer.Option("vllm", "--format", help="Export format: vllm."),
    out: Path = typer.Option(..., help="Folder to write (must not exist, unless --force)."),
    force: bool = typer.Option(False, help="Replace an earlier export in --out."),
) -> None:
    """Write a run for vLLM's multi-LoRA serving: per task a PEFT adapter vLLM loads, the switch, and a routing
    manifest (llava-cit-vllm.json)."""
    if format != "vllm":
        raise UserError(f"--format must be vllm, got '{format}'")
    quiet_libraries()
    from llava_cit.serve.vllm_export import MANIFEST, export_vllm

    manifest = export_vllm(run, out, force=force, say=say)
    settings = manifest["vllm"]
    say(f"exported {len(manifest['adapters'])} adapter(s) of {run} into {out} ({MANIFEST}); vLLM settings: "
        f"enable_lora, max_lora_rank={settings['max_lora_rank']}, max_loras={settings['max_loras']}"
        + (f", model_impl={settings['model_impl']}" if settings["model_impl"] != "auto" else ""))
