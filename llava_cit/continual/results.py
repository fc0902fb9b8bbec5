"""results.json, rebuilt from the manifest's finished stages after every stage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

from llava_cit.continual.metrics import (
    average,
    backward_transfer,
    mean_average_accuracy,
    mean_final,
    mean_finetuned,
    relative_gain,
)
from llava_cit.util.atomic import write_json
from llava_cit.util.errors import UserError

METRIC_DEFINITIONS = {
    "matrix": "a[i][j]: score on task j after stage i (null before task j is learned)",
    "upper_bound": "UB_j: the score of task j's own adapter trained on task j alone (the same for every method)",
    "relative_gain": "RG[i][j] = a[i][j] / UB_j",
    "mft": "mean over tasks j of a[j][j] (right after learning it)",
    "mfn": "mean over tasks j of a[T][j] (after the last stage; = average)",
    "maa": "mean over stages i of the mean of a[i][0..i]",
    "bwt": "mean over j < T of a[T][j] - a[j][j] (Lopez-Paz & Ranzato 2017)",
    "below_base": "tasks whose own adapter (oracle-routed for a routed method, else a[j][j]) scored no better than the "
                  "untrained base on them",
    "diverged": "null, or where training stopped on a non-finite loss or gradient norm (that stage is not finished)",
}


def below_base(stages: list[dict], routes: bool) -> list[dict]:
    """Stages whose own adapter scored no better than the untrained base on their own task: the adapter's score is
    the oracle-routed upper bound measured in this run for a routed method, else the score right after the stage."""
    low = []
    for s in stages:
        base = s.get("base_score")
        own_upper = routes and str(s.get("upper_bound_source") or "").startswith("own adapter")
        score = s.get("upper_bound") if own_upper else s["scores"][s["stage"]]
        if base is not None and score is not None and score <= base:
            low.append({"stage": s["stage"], "task": s["task"], "score": score, "base_model": base})
    return low


def serving_adapters(stages: list[dict]) -> dict[str, str]:
    """{task: the adapter that serves it after the last stage} (the last stage's serving map; its own stage's
    adapter for runs written before serving maps)."""
    serving = (stages[-1].get("serving") or {}) if stages else {}
    return {s["task"]: serving.get(s["task"], s["adapter"]) for s in stages}


# what results.json takes from the manifest's finished stages (the rest: the method, model and config)
FROM_MANIFEST = ("tasks", "matrix", "upper_bound", "base_model", "final", "average", "mft", "mfn", "maa", "bwt",
                 "relative_gain", "switch_accuracy", "adapters", "serving", "switch")


def check_against_manifest(results: dict, stages: list[dict], path: Path) -> None:
    """results.json holds the tasks, scores, adapters, serving map and switch of the manifest's finished stages
    (what serves a run and what a report prints are read from results.json; the manifest holds the checksums that
    vouch for them). Fields a run written by an older version lacks are not compared."""
    plan = SimpleNamespace(name=results.get("method"), routes=None, router=None, full_finetune=None)
    try:
        expected = build_results(stages, plan, {"model": results.get("model")}, [])
    except (KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path.with_name('manifest.json')}: a finished stage lacks a field or has a malformed one "
                        f"({type(err).__name__}: {err})") from None
    for key in FROM_MANIFEST:
        if key in results and results[key] != expected[key]:
            raise UserError(f"{path}: field '{key}' disagrees with the run's manifest.json (results.json says "
                            f"{results[key]!r}, the manifest {expected[key]!r}): the run's files were changed")


def build_results(stages: list[dict], method, config: dict, tasks, diverged: dict | None = None) -> dict:
    names = [s["task"] for s in stages]
    matrix = [s["scores"] + [None] * (len(names) - len(s["scores"])) for s in stages]
    upper = [s.get("upper_bound") for s in stages]
    metric_names = {t.name: t.metric + {"exact_match": f" ({t.normalizer})", "sari": " (/100)"}.get(t.metric, "")
                    for t in tasks if t.name in names}
    return {
        "method": method.name,
        # how the run is served (read by serving, so a method file need not be found again)
        "method_plan": {"routes": method.routes, "router": method.router, "full_finetune": method.full_finetune},
        "model": config["model"],
        "tasks": names,
        "metric": metric_names,
        "matrix": matrix,
        "upper_bound": dict(zip(names, upper)),
        "upper_bound_source": dict(zip(names, [s.get("upper_bound_source") for s in stages])),
        "base_model": dict(zip(names, [s.get("base_score") for s in stages])),
        "below_base": below_base(stages, method.routes),
        "diverged": diverged,
        "final": dict(zip(names, matrix[-1])) if matrix else {},
        "average": average(matrix),
        "mft": mean_finetuned(matrix),
        "mfn": mean_final(matrix),
        "maa": mean_average_accuracy(matrix),
        "bwt": backward_transfer(matrix),
        "relative_gain": relative_gain(matrix, upper),
        "switch_accuracy": [s["switch_accuracy"] for s in stages],
        "false_rejection_rate": [s.get("false_rejection_rate") for s in stages],
        "bad_samples": [s.get("bad_samples", {}) for s in stages],
        "extra_metrics": [s.get("extra_metrics", {}) for s in stages],
        "adapters": {s["task"]: s["adapter"] for s in stages},  # each stage's own adapter
        "serving": serving_adapters(stages),  # the adapter that serves each task after the last stage
        "task_similarity": [s.get("task_similarity") for s in stages],
        "switch": stages[-1]["switch"] if stages else None,
        "definitions": METRIC_DEFINITIONS,
        "timings": {
            "train_seconds": sum(s["seconds"]["train"] for s in stages),
            "eval_seconds": sum(s["seconds"]["eval"] for s in stages),
            "per_stage": [s["seconds"] for s in stages],
            "train_samples_per_second": [s["train"].get("samples_per_second") for s in stages],
        },
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
    }


def write_results(run_dir: Path, stages: list[dict], method, config: dict, tasks, diverged: dict | None = None) -> dict:
    results = build_results(stages, method, config, tasks, diverged)
    write_json(run_dir / "results.json", results)
    return results
