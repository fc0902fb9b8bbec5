"""A synthetic task is actually learned: the adapter's accuracy is clearly above the bare base's.

Uses the demo's own settings (pre-trained tiny base, one LoRA stage), so it also checks what
README command 1 claims.
"""


from llava_cit.config import load_config
from llava_cit.continual.demo import demo_preset
from llava_cit.continual.runner import ContinualRunner


def test_synthetic_task_is_learned(tmp_path):
    config = demo_preset("vision")
    config.update(tasks=["synth-ocr"], method="switchcit")
    config["eval"]["limit"] = 100
    results = ContinualRunner(load_config(None, base=config), tmp_path / "learn").run()
    before, after = results["base_model"]["synth-ocr"], results["final"]["synth-ocr"]
    assert after >= before + 0.3, (before, after)
