"""Soak test: kill a tiny `llava-cit train` run at random moments (SIGKILL and SIGTERM), rerun the same
command each time, and check that it finishes with no hand repair and is the run it would have been: its
adapters, switches and predictions byte for byte, and its results.json value for value (timings aside), as an
uninterrupted run's.

    python scripts/soak/kill_resume.py --kills 12 --seed 0 [--out docs/bench/soak_kill_resume.json]

Each kill lands at a random moment of the whole run (model load, training steps, Trainer checkpoint saves,
adapter saves, switch fit, evaluation, results writes). "Hand repairs" counts reruns that failed for any
reason other than our own kill: each would have needed a person.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CONFIG = {
    "model": "tiny-llava", "method": "switchcit", "tasks": ["synth-shapes", "synth-ocr"], "train_limit": 96,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "projector_lr": None},
    "train": {"epochs": 2, "lr": 1e-3, "batch_size": 8, "max_length": 48, "save_steps": 3, "report_to": "none"},
    "retention": {"fraction": 0.0001, "min_count": 8},
    "switch": {"extractor": "tiny-opt", "hidden": 32, "epochs": 100},
    "eval": {"limit": 24, "batch_size": 12, "max_new_tokens": 3},
}


def saved_extractor(folder: Path) -> str:
    """The switch's extractor as a saved model folder, as a pretrained one is: loaded once per run and never
    re-seeding the process (the built-in tiny-opt one seeds it when built, which would hide a seeding fault)."""
    from switch.tiny import tiny_opt, words_of

    model, tokenizer = tiny_opt(words_of(["what shape is in the image", "read the word in the image"]), seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def train(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llava_cit.cli", "train", str(config), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def artifacts(run: Path) -> dict[str, dict]:
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    return {rel: files for s in stages for rel, files in s["checksums"].items()}


COMPARED = ("adapters", "switch", "predictions")  # byte for byte against the uninterrupted run


def files(run: Path) -> dict[str, dict[str, str]]:
    """{folder: {path: sha256}} of every file under each of COMPARED, read from disk (not from the manifest)."""
    return {folder: {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in sorted((run / folder).rglob("*")) if p.is_file()} for folder in COMPARED}


def results_without_timings(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text())
    results.pop("timings", None)
    return results


def differing(reference: dict[str, str], soaked: dict[str, str]) -> list[str]:
    return sorted(name for name in set(reference) | set(soaked) if reference.get(name) != soaked.get(name))


def shape(value):
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k not in ("timings", "config_sha256")}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/bench/soak_kill_resume.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = tmp / "soak.yaml"
        extractor = saved_extractor(tmp / "extractor")
        config.write_text(yaml.safe_dump({**CONFIG, "switch": {**CONFIG["switch"], "extractor": extractor}}))
        started = time.perf_counter()
        reference = train(config, tmp / "reference")
        _, err = reference.communicate()
        if reference.returncode != 0:
            sys.exit(f"the uninterrupted run failed: {err}")
        duration = time.perf_counter() - started
        kills, repairs, events, rounds = 0, 0, [], []
        reference_results = shape(json.loads((tmp / "reference" / "results.json").read_text()))
        reference_values = results_without_timings(tmp / "reference")
        ref_artifacts = artifacts(tmp / "reference")
        ref_files = files(tmp / "reference")
        while kills < args.kills and repairs <= 3:  # each round: a fresh run, killed until it finishes
            run = tmp / f"soaked-{len(rounds)}"
            round_kills = 0
            while True:
                process = train(config, run)
                delay = rng.uniform(0.5, duration)
                try:
                    process.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
                    process.send_signal(sig)
                    process.wait()
                    kills += 1
                    round_kills += 1
                    events.append({"round": len(rounds), "after_s": round(delay, 1), "signal": sig.name})
                    continue
                err = process.stderr.read()
                if process.returncode == 0:
                    break
                repairs += 1  # failed on its own: a person would have to step in
                events.append({"round": len(rounds), "failed": err.strip().splitlines()[-1:] if err else process.returncode})
                if repairs > 3:
                    break
            finished = (run / "results.json").is_file() and process.returncode == 0
            soaked = artifacts(run) if finished else {}
            soaked_files = files(run) if finished else {folder: {} for folder in COMPARED}
            changed = {folder: differing(ref_files[folder], soaked_files[folder]) for folder in COMPARED}
            rounds.append({
                "kills": round_kills, "finished": finished,
                "results_structure_matches": finished and shape(json.loads((run / "results.json").read_text()))
                == reference_results,
                "artifact_files_match": {k: sorted(v) for k, v in ref_artifacts.items()} == {
                    k: sorted(v) for k, v in soaked.items()},
                "artifacts_byte_identical": ref_artifacts == soaked,
                **{f"{folder}_identical": not changed[folder] for folder in COMPARED},
                "results_identical": finished and results_without_timings(run) == reference_values,
                "differing_files": [name for folder in COMPARED for name in changed[folder]][:10],
            })
        result = {
            "kills": kills, "hand_repairs": repairs, "rounds": len(rounds),
            "all_finished": all(r["finished"] for r in rounds),
            "results_structure_matches": all(r["results_structure_matches"] for r in rounds),
            "artifact_files_match": all(r["artifact_files_match"] for r in rounds),
            "artifacts_byte_identical_rounds": sum(r["artifacts_byte_identical"] for r in rounds),
            **{f"{folder}_identical": all(r[f"{folder}_identical"] for r in rounds) for folder in COMPARED},
            "results_identical": all(r["results_identical"] for r in rounds),
            "uninterrupted_run_seconds": round(duration, 1), "per_round": rounds, "events": events, "seed": args.seed,
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("events", "per_round")}, indent=2))
    identical = all(result[f"{folder}_identical"] for folder in COMPARED) and result["results_identical"]
    if not (result["all_finished"] and result["results_structure_matches"] and identical and repairs == 0):
        sys.exit(1)


if __name__ == "__main__":
    main()
