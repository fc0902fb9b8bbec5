"""Peak resident memory of loading and iterating a LLaVA-format training set: 20,000 records vs 200 records
over the same 1,000 distinct 640x480 JPEGs. Images are opened when a batch needs them, so the ratio should
stay near 1 (goal: <= 1.5x). Each size runs in a fresh child process (peak RSS is per process).

    python scripts/bench/memory_lazy_images.py [--out docs/bench/memory_lazy_images.json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys
from llava_cit.data.sources import load_source
examples = load_source({"type": "llava", "path": sys.argv[1], "image_folder": sys.argv[2]}, "bench", "train")
pixels = 0
for example in examples:  # what a training epoch does: every image opened once, then dropped
    pixels += example.load_image().size[0]
print(json.dumps({"records": len(examples), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_data(root: Path, images: int = 1000, sizes=(200, 20000)) -> dict[int, Path]:
    from PIL import Image

    folder = root / "images"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for i in range(images):
        base = Image.effect_noise((640, 480), 64).convert("RGB")
        base.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), (0, 0, 320, 240))
        base.save(folder / f"{i}.jpg", quality=90)
    files = {}
    for size in sizes:
        records = [{"id": str(n), "image": f"{n % images}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the top-left block?"},
            {"from": "gpt", "value": "a colour"}]} for n in range(size)]
        files[size] = root / f"train_{size}.json"
        files[size].write_text(json.dumps(records))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/bench/memory_lazy_images.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_data(Path(tmp))
        runs = {}
        for size, path in files.items():
            done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(Path(tmp) / "images")],
                                  capture_output=True, text=True, check=True)
            runs[size] = json.loads(done.stdout.strip().splitlines()[-1])
    result = {"small": runs[200], "large": runs[20000],
              "ratio_large_over_small": runs[20000]["peak_rss_mb"] / runs[200]["peak_rss_mb"],
              "goal": "<= 1.5", "images": "1,000 distinct 640x480 JPEGs"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"200 records: {runs[200]['peak_rss_mb']:.0f} MB peak RSS; 20,000 records: {runs[20000]['peak_rss_mb']:.0f} MB; "
          f"ratio {result['ratio_large_over_small']:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
