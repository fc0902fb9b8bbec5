"""The text demo's effect, measured: a text task is learned, one LoRA tuned on the next task forgets
it, and SwitchCIT keeps it by routing each query to its own adapter.

Uses `llava-cit demo --track text`'s own settings (tiny BLOOM pre-trained to copy text, CT0 prompt
families), shortened: two tasks, a smaller training set, two methods (~4 min on
2 CPU cores).
"""

import json

from llava_cit.continual.demo import run_demo


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
