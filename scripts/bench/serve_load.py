"""Load on `llava-cit serve`: throughput and latency of concurrent clients vs one request at a time.

The server (the API of llava_cit.serve.openai_api over a run) runs in this process on a free loopback port; clients
are threads sending chat completions over HTTP (the standard library's client, lighter than `openai` on a shared
CPU). Both phases send the same mixed requests (images of two tasks as data URLs) to the same server:

  one at a time  one client, each request sent when the previous one is answered
  concurrent     --concurrency clients at once (answered together in batches by the server)

Bounded: at most 512 requests and 64 clients, every phase stops at --time-limit-s. Loopback only.

    python scripts/bench/serve_load.py --out docs/bench/serve_load_tiny_cpu.json          (trains a tiny run first)
    python scripts/bench/serve_load.py --run runs/demo/switchcit --requests 64 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# isort: off
import llava_cit  # noqa: F401  (filters library messages a user cannot act on, before peft is imported)
# isort: on

import torch
import uvicorn

from llava_cit.data import synthetic
from llava_cit.serve.openai_api import ServeSettings, create_app
from llava_cit.serve.served_run import ServedRun

MAX_REQUESTS, MAX_CLIENTS = 512, 64


def tiny_run(folder: Path) -> Path:
    """The tests' tiny routed run (tiny LLaVA, two synthetic tasks, a switch)."""
    from llava_cit.config import load_config
    from llava_cit.continual.runner import ContinualRunner

    config = {"model": "tiny-llava", "method": "switchcit", "tasks": ["synth-shapes", "synth-ocr"], "train_limit": 48,
              "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "projector_lr": None},
              "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 48, "save_steps": 2},
              "retention": {"fraction": 0.0001, "min_count": 8},
              "switch": {"extractor": "tiny-opt", "hidden": 32, "epochs": 100},
              "eval": {"limit": 12, "batch_size": 12, "max_new_tokens": 3}}
    ContinualRunner(load_config(None, base=config), folder / "switchcit").run()
    return folder / "switchcit"


def payloads(model: str, count: int, max_tokens: int) -> list[bytes]:
    import base64
    import io

    examples = [x for pair in zip(synthetic.generate("synth-shapes", count, split="test"),
                                  synthetic.generate("synth-ocr", count, split="test")) for x in pair][:count]
    bodies = []
    for example in examples:
        buffer = io.BytesIO()
        example.image.save(buffer, format="PNG")
        image = f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"
        content = [{"type": "image_url", "image_url": {"url": image}},
                   {"type": "text", "text": example.instruction.replace("<image>\n", "")}]
        bodies.append(json.dumps({"model": model, "max_tokens": max_tokens, "temperature": 0,
                                  "messages": [{"role": "user", "content": content}]}).encode())
    return bodies


def send(url: str, body: bytes) -> tuple[float, int]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()
        status = response.status
    return time.perf_counter() - start, status


def phase(url: str, bodies: list[bytes], clients: int, time_limit_s: float) -> dict:
    deadline = time.monotonic() + time_limit_s
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(body: bytes) -> None:
        nonlocal errors
        if time.monotonic() > deadline:
            return
        try:
            latency, status = send(url, body)
        except OSError:
            latency, status = None, 0
        with lock:
            if status == 200:
                latencies.append(latency)
            else:
                errors += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, bodies))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)

    def percentile(q: float) -> float | None:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else None

    return {"clients": clients, "answered": len(latencies), "errors": errors, "wall_s": wall,
            "throughput_rps": len(latencies) / wall if wall > 0 else None,
            "latency_p50_s": percentile(0.5), "latency_p99_s": percentile(0.99),
            "latency_mean_s": statistics.fmean(latencies) if latencies else None,
            "stopped_at_time_limit": len(latencies) + errors < len(bodies)}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="A finished run (default: train the tests' tiny run first).")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--batch-window-ms", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--time-limit-s", type=float, default=300.0, help="Each phase stops sending after this.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not 1 <= args.requests <= MAX_REQUESTS or not 1 <= args.concurrency <= MAX_CLIENTS:
        parser.error(f"--requests must be in 1..{MAX_REQUESTS} and --concurrency in 1..{MAX_CLIENTS}")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        run = args.run or tiny_run(Path(scratch))
        served = ServedRun(run)
        app = create_app(served, ServeSettings(batch_window_s=args.batch_window_ms / 1000, max_batch=args.max_batch))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        url = f"{base}/v1/chat/completions"
        bodies = payloads(served.name, args.requests, args.max_tokens)
        send(url, bodies[0])  # warm-up: first-call allocations and lazy imports
        sequential = phase(url, bodies, 1, args.time_limit_s)
        before = json.loads(urllib.request.urlopen(f"{base}/health").read())
        concurrent = phase(url, bodies, args.concurrency, args.time_limit_s)
        after = json.loads(urllib.request.urlopen(f"{base}/health").read())
        server.should_exit = True
        thread.join(30)

    result = {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "run": str(args.run) if args.run else "tiny run (tiny-llava, synth-shapes + synth-ocr, switchcit)",
        "settings": {"requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
                     "batch_window_ms": args.batch_window_ms, "max_batch": args.max_batch},
        "one_at_a_time": sequential, "concurrent": concurrent,
        "concurrent_batches": after["batches"] - before["batches"], "largest_batch": after["largest_batch"],
        "throughput_ratio": (concurrent["throughput_rps"] / sequential["throughput_rps"]
                             if sequential["throughput_rps"] and concurrent["throughput_rps"] else None),
        "environment": {"cpu": cpu_model(), "cores": len(__import__("os").sched_getaffinity(0)),
                        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                        "python": platform.python_version(), "cuda": torch.cuda.is_available(),
                        "date": time.strftime("%Y-%m-%d")},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
