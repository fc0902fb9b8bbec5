"""Per-step training time of the tiny LLaVA with 1 vs 2 intra-op CPU threads, side by side in one process.

    python scripts/bench/cpu_threads.py --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from llava_cit.data.collation import Encoder, TrainCollator
from llava_cit.data.synthetic import generate
from llava_cit.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    loaded = load_model("tiny-llava")
    encoder = Encoder(loaded, max_length=64)
    batch = TrainCollator(encoder.tokenizer.pad_token_id)([encoder.encode_train(e) for e in generate("synth-caption", 32)])
    optimizer = torch.optim.AdamW(loaded.model.parameters(), 1e-4)
    times = {1: [], 2: []}
    for _ in range(args.rounds):  # interleave so both settings see the same machine conditions
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for _ in range(args.steps):
                start = time.perf_counter()
                loaded.model(**batch).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                times[threads].append(time.perf_counter() - start)
    for threads, values in times.items():
        print(f"{threads} thread(s): median {statistics.median(values) * 1000:.0f} ms/step, "
              f"p90 {sorted(values)[int(0.9 * len(values))] * 1000:.0f} ms, steps {len(values)}")
    print(f"2 threads / 1 thread median step time: {statistics.median(times[2]) / statistics.median(times[1]):.2f}")


if __name__ == "__main__":
    main()
