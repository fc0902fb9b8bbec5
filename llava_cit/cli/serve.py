"""`llava-cit serve`: a finished run behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from llava_cit.cli.app import app, quiet_libraries, say
from llava_cit.util.errors import UserError

SERVE_EPILOG = """Examples:

  llava-cit serve runs/demo/switchcit

  llava-cit serve runs/gqa-ocr --images-root /data/images --port 8080 --api-key "$KEY"

  llava-cit serve runs/gqa-ocr --engine vllm          (CUDA + vLLM; the run is exported first)

Then, with the openai client: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-").chat.completions.create(
model="switchcit", messages=[{"role": "user", "content": "..."}]); model "switchcit/<task>" pins a task's adapter.
"""


def _serving_extra() -> None:
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"serving needs {' and '.join(missing)}: pip install -e \".[serve]\"")


@app.command(epilog=SERVE_EPILOG)
def serve(
    run: Path = typer.Argument(..., help="A finished run directory."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    engine: str = typer.Option("transformers", help="transformers (this toolkit's batched generation through the "
                                                    "gathered LoRA) or vllm (an in-process vLLM engine; CUDA)."),
    name: str | None = typer.Option(None, help="The model name clients use (default: the run folder's name)."),
    images_root: Path | None = typer.Option(None, help="Image files a request may name (file:// or relative paths) "
                                                       "must lie under this folder; without it only data: URLs."),
    allow_remote_images: bool = typer.Option(False, help="Fetch http(s) image URLs (refused by default)."),
    max_image_bytes: int = typer.Option(20 * 1024 * 1024, min=1, help="Largest image accepted, in bytes."),
    max_image_pixels: int = typer.Option(4096 * 4096, min=1, help="Largest image accepted, in pixels (read from "
                                                                  "its header before decoding)."),
    max_tokens: int = typer.Option(1024, min=1, help="The most tokens one request may ask to generate."),
    max_request_bytes: int = typer.Option(32 * 1024 * 1024, min=1, help="Largest request body, in bytes."),
    batch_window_ms: float = typer.Option(10.0, min=0, help="Requests arriving within this window are answered "
                                                            "together."),
    max_batch: int = typer.Option(16, min=1, help="The most requests answered in one generation."),
    api_key: str | None = typer.Option(None, envvar="LLAVA_CIT_API_KEY", help="Require `Authorization: Bearer "
                                                                              "<key>` on /v1/."),
    export_dir: Path | None = typer.Option(None, help="--engine vllm: where the run is exported (default: a "
                                                      "temporary folder), or an existing export of it."),
    trust_remote_code: bool = typer.Option(False, help="Allow the run's model code from the Hub."),
) -> None:
    """Serve a run behind an OpenAI-compatible HTTP API, each request routed by the run's switch.

    POST /v1/chat/completions (model "<run>", or "<run>/<task>" to pin a task's adapter), GET /v1/models,
    GET /health. Ctrl-C (or SIGTERM) stops taking requests and answers those in flight first."""
    if engine not in ("transformers", "vllm"):
        raise UserError(f"--engine must be transformers or vllm, got '{engine}'")
    if images_root is not None and not images_root.is_dir():
        raise UserError(f"--images-root {images_root}: not a folder")
    _serving_extra()
    if engine == "vllm":
        from llava_cit.serve.vllm_engine import import_vllm

        import_vllm()  # refused at once where vLLM is missing, before any export or model load
    quiet_libraries()
    from llava_cit.serve.chat_request import RequestLimits
    from llava_cit.serve.request_images import ImagePolicy

    policy = ImagePolicy(images_root, allow_remote_images, max_image_bytes, max_image_pixels)
    limits = RequestLimits(max_tokens, max_request_bytes, policy)
    with tempfile.TemporaryDirectory(prefix="llava-cit-vllm-") as scratch:
        served = _engine(run, engine, name, trust_remote_code, export_dir, Path(scratch))
        _run_server(served, limits, api_key, batch_window_ms / 1000, max_batch, host, port)


def _engine(run: Path, engine: str, name: str | None, trust_remote_code: bool, export_dir: Path | None, scratch: Path):
    if engine == "transformers":
        from llava_cit.serve.served_run import ServedRun

        say(f"loading {run}")
        return ServedRun(run, trust_remote_code=trust_remote_code, name=name)
    from llava_cit.serve.vllm_engine import VllmEngine
    from llava_cit.serve.vllm_export import MANIFEST, export_vllm

    target = export_dir or scratch / "export"
    if not (target / MANIFEST).is_file():
        export_vllm(run, target, say=say)
    return VllmEngine(target, name=name or run.resolve().name)


def _run_server(served, limits, api_key: str | None, window_s: float, max_batch: int, host: str, port: int) -> None:
    import uvicorn

    from llava_cit.serve.openai_api import ServeSettings, create_app

    application = create_app(served, ServeSettings(api_key, limits, window_s, max_batch))
    tasks = ", ".join(served.tasks) or "none"
    say(f"serving '{served.name}' ({served.engine}; pinnable tasks: {tasks}) on http://{host}:{port}/v1")
    server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="info",
                                           timeout_graceful_shutdown=None))
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the signal it caught once the requests in flight are answered
        pass
    say("server stopped")
