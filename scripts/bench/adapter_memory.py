"""Resident memory of many loaded adapters: 128 LoRA adapters of the tiny LLaVA (the toolkit's own adapter
layout: every language-model linear + the projector's copy), saved to disk, then loaded into one model the
way a run is served (PeftModel.from_pretrained + load_adapter), then stacked for gathered mixed batches.

Reports the growth of the process's resident set (VmRSS) against the adapters' own size on disk, and the
same for a server that loads adapters lazily and is asked for only a few of them.

    python scripts/bench/adapter_memory.py --adapters 128 --out docs/bench/adapter_memory_tiny_cpu.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# isort: off
import llava_cit  # noqa: F401
from peft import PeftModel
# isort: on

from llava_cit.config import LoraSettings
from llava_cit.models.tiny import tiny_llava
from llava_cit.serve.gathered_lora import GatheredLoRA
from llava_cit.train.trainer import add_adapter


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def save_adapters(folder: Path, count: int, rank: int) -> int:
    """`count` adapters with distinct random weights; returns their total size on disk."""
    model, _ = tiny_llava(seed=0)
    peft = add_adapter(model, "default", LoraSettings(r=rank, alpha=2 * rank, dropout=0.0), True)
    total = 0
    for k in range(count):
        torch.manual_seed(k)
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_" in name or "modules_to_save" in name:
                    p.normal_(0, 0.02)
        peft.save_pretrained(folder / f"a{k:03d}")
        total += sum(f.stat().st_size for f in (folder / f"a{k:03d}").rglob("*.safetensors"))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lazy-used", type=int, default=4, help="adapters a lazily loading server is asked for")
    parser.add_argument("--out", default=None)
    parser.add_argument("--lazy-from", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lazy_from:
        model, _ = tiny_llava(seed=0)
        gc.collect()
        before = rss_bytes()
        folder = Path(args.lazy_from)
        peft = PeftModel.from_pretrained(model, folder / "a000", adapter_name="a000")
        for k in range(1, args.lazy_used):
            peft.load_adapter(folder / f"a{k:03d}", adapter_name=f"a{k:03d}")
        gc.collect()
        print(json.dumps({"rss_growth_bytes": rss_bytes() - before}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        on_disk = save_adapters(folder, args.adapters, args.rank)
        gc.collect()
        model, _ = tiny_llava(seed=0)
        model.eval()
        gc.collect()
        before = rss_bytes()
        peft = PeftModel.from_pretrained(model, folder / "a000", adapter_name="a000")
        for k in range(1, args.adapters):
            peft.load_adapter(folder / f"a{k:03d}", adapter_name=f"a{k:03d}")
        gc.collect()
        loaded = rss_bytes()
        GatheredLoRA(peft)
        gc.collect()
        stacked = rss_bytes()
        in_memory = sum(p.numel() * p.element_size() for n, p in peft.named_parameters()
                        if "lora_" in n or "modules_to_save" in n)
        # lazily, in a fresh process (this one's allocator keeps what it freed): only the routed adapters are read
        lazy = subprocess.run([sys.executable, __file__, "--lazy-from", str(folder), "--lazy-used", str(args.lazy_used)],
                              capture_output=True, text=True, check=True)
        lazy_growth = json.loads(lazy.stdout.strip().splitlines()[-1])["rss_growth_bytes"]
    result = {
        "device": platform.processor() or "cpu", "adapters": args.adapters, "rank": args.rank,
        "adapters_on_disk_bytes": on_disk, "adapter_parameters_in_memory_bytes": in_memory,
        "rss_growth_loading_bytes": loaded - before, "rss_growth_after_stacking_bytes": stacked - before,
        "loading_overhead_over_adapters": (loaded - before) / on_disk,
        "stacked_overhead_over_adapters": (stacked - before) / on_disk,
        "lazy_used": args.lazy_used, "lazy_rss_growth_bytes": lazy_growth,
        "lazy_growth_over_all_adapters": lazy_growth / on_disk,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
