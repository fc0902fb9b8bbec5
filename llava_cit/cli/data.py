"""`llava-cit data ...`: prepare the paper's data from the original files (Typer sub-commands)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from llava_cit.util.errors import UserError

data_app = typer.Typer(help="Prepare data: split LLaVA-1.5's mixture, download OCR-VQA images, OCR-VQA's test "
                            "split, OCRBench from its Hugging Face copy; check a downloaded task sequence "
                            "(UCIT, CoIN, MLLM-DCL).", no_args_is_help=True)
console = Console()


@data_app.command("split-mix", epilog="Example:\n\n  llava-cit data split-mix llava_v1_5_mix665k.json "
                                      "--out $LLAVA_CIT_DATA/llava_cit")
def split_mix_command(
    mix: Path = typer.Argument(..., help="llava_v1_5_mix665k.json (a JSON array of LLaVA-format records)."),
    out: Path = typer.Option(..., help="Folder for one <source>.json per source (gqa.json, ocr_vqa.json, ...)."),
) -> None:
    """Split LLaVA-1.5's instruction mixture into one LLaVA-format file per source, streaming."""
    from llava_cit.data_prep.split_mix import split_mix
    from llava_cit.util.progress_display import ItemProgress

    with ItemProgress(f"splitting {mix.name}", None, console) as bar:
        counts = split_mix(mix, out, progress=bar.advance)
    for source, count in counts.items():
        console.print(f"{source:<10} {count:>8} records -> {out / (source + '.json')}")


@data_app.command("ocrvqa-images", epilog="Examples:\n\n  llava-cit data ocrvqa-images dataset.json --out "
                                          "$LLAVA_CIT_DATA/ocr_vqa/images\n\n  llava-cit data ocrvqa-images "
                                          "dataset.json --out images --workers 32 --retries 5  # rerun: only the "
                                          "missing ones")
def ocrvqa_images_command(
    dataset: Path = typer.Argument(..., help="OCR-VQA's dataset.json (image id -> imageURL, questions, ...)."),
    out: Path = typer.Option(..., help="Image folder: every image is written as <id>.jpg."),
    workers: int = typer.Option(16, min=1, help="Parallel downloads."),
    retries: int = typer.Option(3, min=0, help="Retries per image, with exponential back-off."),
    timeout: float = typer.Option(30.0, min=0.01, help="Seconds per request."),
    backoff: float = typer.Option(1.0, min=0.0, help="First back-off in seconds (doubled at each retry)."),
    split: str = typer.Option("all", help="all, train, val or test."),
    failures: Path | None = typer.Option(None, help="Where the failures go (JSON lines: id, url, reason); default "
                                                    "<out>.failed.jsonl beside the folder."),
) -> None:
    """Download OCR-VQA's images (verified, converted to JPEG, resumable); dead URLs are listed, never fatal."""
    from llava_cit.data_prep.ocrvqa import SPLITS, read_dataset
    from llava_cit.data_prep.ocrvqa_images import download_images
    from llava_cit.util.progress_display import ItemProgress

    data = read_dataset(dataset)
    if split != "all":
        if split not in SPLITS:
            raise UserError(f"--split must be all, train, val or test, got '{split}'")
        data = {k: v for k, v in data.items() if int(v["split"]) == SPLITS[split]}
    failures = failures or out.parent / f"{out.name}.failed.jsonl"
    with ItemProgress("OCR-VQA images", len(data), console) as bar:
        report = download_images(data, out, workers, retries, timeout, backoff, failures, progress=bar.advance)
    console.print(f"downloaded {report.downloaded}, already present {report.present}, failed {len(report.failed)}"
                  + (f" (ids and reasons in {failures})" if report.failed else ""))


@data_app.command("ocrvqa-test", epilog="Example:\n\n  llava-cit data ocrvqa-test dataset.json --out "
                                        "$LLAVA_CIT_DATA/llava_cit/ocr_vqa_test.json")
def ocrvqa_test_command(
    dataset: Path = typer.Argument(..., help="OCR-VQA's dataset.json."),
    out: Path = typer.Option(..., help="The LLaVA-format evaluation file to write."),
) -> None:
    """OCR-VQA's test split (split 3) as evaluation records, one per question (images ocr_vqa/images/<id>.jpg)."""
    from llava_cit.data_prep.ocrvqa import write_test_split

    console.print(f"{write_test_split(dataset, out)} test questions -> {out}")


@data_app.command("ocrbench", epilog="Examples:\n\n  llava-cit data ocrbench --out OCRBench\n\n"
                                     "  llava-cit data ocrbench --source /path/to/a/local/copy --out OCRBench")
def ocrbench_command(
    out: Path = typer.Option(..., help="Folder for OCRBench.json + OCRBench_Images/ (the official layout)."),
    source: str = typer.Option("echo840/OCRBench", help="Hugging Face dataset id, or a local copy of it."),
) -> None:
    """OCRBench's 1,000 records and images from its Hugging Face copy, in the official layout."""
    from llava_cit.data_prep.ocrbench_export import export_ocrbench
    from llava_cit.util.progress_display import ItemProgress

    with ItemProgress("OCRBench", 1000, console) as bar:
        count = export_ocrbench(source, out, progress=bar.advance)
    console.print(f"{count} records -> {out / 'OCRBench.json'}, images under {out / 'OCRBench_Images'}")


@data_app.command("stage1", epilog="Example:\n\n  llava-cit data stage1 --vicuna lmsys/vicuna-7b-v1.5 --clip "
                                   "openai/clip-vit-large-patch14-336 --projector mm_projector.bin --out "
                                   "$LLAVA_CIT_DATA/llava15-stage1")
def stage1_command(
    projector: Path = typer.Option(..., help="mm_projector.bin of liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5."),
    out: Path = typer.Option(..., help="Where the assembled model (safetensors + processor) is written."),
    vicuna: str = typer.Option("lmsys/vicuna-7b-v1.5", help="The language model (Hub id or local folder)."),
    clip: str = typer.Option("openai/clip-vit-large-patch14-336", help="The vision tower (Hub id or local folder)."),
    dtype: str = typer.Option("bfloat16", help="bfloat16, float16 or float32."),
) -> None:
    """LLaVA-1.5 at the end of its stage 1 (the paper's starting point), assembled from its three parts."""
    from llava_cit.models.stage1 import assemble_stage1

    if dtype not in ("bfloat16", "float16", "float32"):
        raise UserError(f"--dtype must be bfloat16, float16 or float32, got '{dtype}'")
    console.print(f"stage-1 LLaVA-1.5 -> {assemble_stage1(vicuna, clip, projector, out, dtype)}")


@data_app.command("check", epilog="Examples:\n\n  llava-cit data check ucit\n\n"
                                  "  llava-cit data check coin --data-root /data/cl   # instead of $LLAVA_CIT_DATA\n\n"
                                  "  llava-cit data check mllm-dcl --max-listed 100")
def check_command(
    benchmark: str = typer.Argument(..., help="A task sequence with released files: ucit, coin or mllm-dcl."),
    data_root: Path | None = typer.Option(None, help="The data root holding ucit/, coin/, mllm-dcl/ (default: "
                                                     "$LLAVA_CIT_DATA)."),
    max_listed: int = typer.Option(20, min=1, help="At most this many missing images or folders listed per split."),
) -> None:
    """Verify a downloaded copy of a benchmark's released files in their published layout: every task's files,
    its record counts and the images they name; whatever is missing is listed, one line each (exit 1)."""
    import os

    from llava_cit.data.paths import DATA_ROOT_VAR
    from llava_cit.data_prep.release_check import check_sequence

    if data_root is not None:
        if not data_root.is_dir():
            raise UserError(f"--data-root: not a folder: {data_root}")
        os.environ[DATA_ROOT_VAR] = str(data_root)
    elif not os.environ.get(DATA_ROOT_VAR):
        raise UserError(f"${DATA_ROOT_VAR} is not set: export {DATA_ROOT_VAR}=<the folder holding {benchmark}/> "
                        f"or pass --data-root")
    problems = check_sequence(benchmark, lambda line: console.print(line, highlight=False, soft_wrap=True),
                              max_listed=max_listed)
    if problems:
        console.print(f"{problems} problem(s): the copy under ${DATA_ROOT_VAR}/{benchmark} is incomplete")
        raise typer.Exit(1)
    console.print(f"complete: every file, record and image of {benchmark} is in place")
