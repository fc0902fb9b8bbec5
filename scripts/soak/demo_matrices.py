"""Record or check the demos' accuracy matrices (seed 0) against a stored fixture from the same CPU.

A refactor that claims "behaviour unchanged" runs this: the vision and text demos' matrices must equal, to the last
digit, those recorded before it on the same machine (another CPU gives other numbers: the fixture names its CPU, and a
check on another one is refused).

    python scripts/soak/demo_matrices.py record tests/fixtures/demo_matrices_seed0.json --runs runs/fixture
    python scripts/soak/demo_matrices.py check tests/fixtures/demo_matrices_seed0.json --runs runs/check
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

TRACKS = ("vision", "text")
METHODS = ("switchcit", "seq-lora", "rehearsal")


def cpu_identity() -> dict:
    """The CPU model and the instruction-set flags that change float results (AVX-512 / AMX kernels)."""
    info = {"machine": platform.machine(), "model": "", "flags": []}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not info["model"]:
                info["model"] = value.strip()
            if key.strip() == "flags" and not info["flags"]:
                info["flags"] = sorted(f for f in value.split() if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return info


def run_demos(runs: Path) -> dict:
    """Run each track's demo (seed 0, default methods) and read its matrices from the run directories."""
    matrices = {}
    for track in TRACKS:
        out = runs / track
        subprocess.run([sys.executable, "-m", "llava_cit.cli", "demo", "--track", track, "--out", str(out)], check=True)
        matrices[track] = read_matrices(out)
    return matrices


def read_matrices(out: Path) -> dict:
    result = {}
    for method in METHODS:
        results = json.loads((out / method / "results.json").read_text())
        result[method] = {"tasks": results["tasks"], "matrix": results["matrix"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["record", "check"])
    parser.add_argument("fixture", type=Path)
    parser.add_argument("--runs", type=Path, required=True, help="Where the demos' run directories go (or are).")
    parser.add_argument("--existing", action="store_true", help="Read finished demos under --runs instead of running.")
    args = parser.parse_args()
    matrices = ({t: read_matrices(args.runs / t) for t in TRACKS} if args.existing else run_demos(args.runs))
    if args.action == "record":
        args.fixture.write_text(json.dumps({"cpu": cpu_identity(), "seed": 0, "matrices": matrices}, indent=1) + "\n")
        print(f"recorded {args.fixture}")
        return
    stored = json.loads(args.fixture.read_text())
    if stored["cpu"] != cpu_identity():
        sys.exit(f"the fixture was recorded on another CPU ({stored['cpu']['model']}): record one here first")
    differ = [f"{track}/{method}: {matrices[track][method]['matrix']} != {want['matrix']}"
              for track, by_method in stored["matrices"].items() for method, want in by_method.items()
              if matrices[track][method] != want]
    print("\n".join(differ) or "every matrix equals the fixture")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
