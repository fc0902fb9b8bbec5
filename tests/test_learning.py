"""A synthetic task is actually learned: the adapter's accuracy is clearly above the bare base's.

Uses the demo's own settings (pre-trained tiny base, one LoRA stage), so it also checks what
README command 1 claims.
"""

import json

from llava_cit.config import load_config
from llava_cit.continual.demo import demo_preset, run_demo
from llava_cit.continual.runner import ContinualRunner


def test_synthetic_task_is_learned(tmp_path):
    config = demo_preset("vision")
    config.update(tasks=["synth-ocr"], method="switchcit")
    config["eval"]["limit"] = 100
    results = ContinualRunner(load_config(None, base=config), tmp_path / "learn").run()
    before, after = results["base_model"]["synth-ocr"], results["final"]["synth-ocr"]
    assert after >= before + 0.3, (before, after)


# The text demo's effect, in this file so the two longest trainings never run at once on two workers (on 2 cores
# they slow each other several-fold).
def test_text_demo_forgetting_vs_switch(tmp_path):
    overrides = ["tasks=[synth-simp, synth-inqqg]", "train_limit=400", "eval.limit=60"]
    switch_dir, seq_dir = run_demo(tmp_path, ("switchcit", "seq-lora"), overrides, track="text")
    switch, seq = (json.loads((d / "results.json").read_text()) for d in (switch_dir, seq_dir))
    base, learned = switch["base_model"]["synth-simp"], switch["matrix"][0][0]
    # stage 0 learned Simp (SARI/100) clearly above the bare base. How far depends on the CPU: the tiny base's copy
    # pre-training is numerically fragile (measured +0.56 on one machine, +0.235 on an AVX-512 EPYC, seeded and
    # repeatable on each); the forgetting and retention claims below hold on both
    assert learned >= base + 0.2, (base, learned)
    assert seq["matrix"][0][0] == learned  # stage 0 is shared by both methods
    forgot, kept = seq["final"]["synth-simp"], switch["final"]["synth-simp"]
    assert forgot <= learned - 0.25, (learned, forgot)  # one LoRA tuned on InqQG forgets Simp
    assert kept >= learned - 0.1 and kept >= forgot + 0.25, (learned, kept, forgot)  # the switch keeps it
    assert switch["switch_accuracy"][1] >= 0.9
    predictions = (switch_dir / "predictions" / "stage-01" / "synth-simp.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["routed_task"] == "synth-simp" for line in predictions) >= 0.9 * len(predictions)
