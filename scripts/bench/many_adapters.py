"""Why many loaded adapters slowed a gathered mixed batch, measured side by side in one process.

    python scripts/bench/many_adapters.py --adapters 2,128 --repeats 3 [--profile]

The tiny LLaVA of scripts/bench/eval_throughput.py (random weights, LoRA r 16 on every language-model linear), 16
queries spread over min(N, 16) adapters, 16 new tokens, one thread; seconds per gathered batch
for each number of adapters loaded (every set-up built first, then their repeats interleaved, the median of each), and
with --profile the functions that take the time (cProfile, cumulative).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import llava_cit  # noqa: F401,E402  (filters library messages before peft is imported)
from llava_cit.data import synthetic  # noqa: E402
from llava_cit.data.collation import Encoder  # noqa: E402
from llava_cit.models.loading import LoadedModel  # noqa: E402
from llava_cit.serve.generation import generate_batch  # noqa: E402
from llava_cit.serve.routing import gathered_for  # noqa: E402
from scripts.bench.eval_throughput import build, with_adapters  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", default="2,128", type=lambda text: [int(x) for x in text.split(",")])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    loaded = build("tiny", torch.float32)
    encoder = Encoder(loaded)
    queries = synthetic.generate("synth-shapes", 16, split="test")
    runs = {}
    for count in args.adapters:  # every set-up in memory at once: their repeats interleave (no order or warm-up bias)
        peft = with_adapters(LoadedModel(copy.deepcopy(loaded.model), loaded.processor, True, ""), count)
        peft.base_model.model.generation_config.eos_token_id = None  # exactly 16 new tokens every time
        routes = [f"task{i % count}" for i in range(16)]

        def run(routes=routes, gathered=gathered_for(peft), peft=peft):
            return generate_batch(peft, encoder, queries, 16, adapter_names=routes, gathered=gathered)

        runs[count] = run
    for run in runs.values():
        run()  # warm-up
    times = {count: [] for count in runs}
    for _ in range(args.repeats):
        for count, run in runs.items():
            start = time.perf_counter()
            run()
            times[count].append(time.perf_counter() - start)
    seconds = {count: statistics.median(values) for count, values in times.items()}
    for count in runs:
        print(f"{count} adapters: {seconds[count]:.4f} s per batch (median of {args.repeats}, interleaved)", flush=True)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            runs[count]()
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(12)
    first = args.adapters[0]
    print(json.dumps({"seconds": seconds, "over_first": {c: s / seconds[first] for c, s in seconds.items()}}, indent=2))


if __name__ == "__main__":
    main()
