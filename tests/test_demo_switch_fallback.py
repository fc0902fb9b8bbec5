"""The tiny demos' switch reads SmolLM2; where it can be neither found nor fetched, the demo says so and falls back to
the random tiny extractor's settings instead of dying."""


import json

import pytest

from llava_cit.config import load_config
from llava_cit.continual.demo import demo_preset, switch_fallback


@pytest.fixture
def no_smollm2(tmp_path, monkeypatch):
    import llava_cit.models.packaged as packaged

    monkeypatch.setenv("LLAVA_CIT_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("LLAVA_CIT_OFFLINE", "1")
    monkeypatch.setattr(packaged, "installed_path", lambda name: None)


def test_without_smollm2_the_text_demo_falls_back_to_the_tiny_switch_and_says_so(no_smollm2):
    said = []
    overrides = switch_fallback("text", ["seed=1"], said.append)
    config = load_config(None, overrides, base=demo_preset("text"))
    assert (config.switch.extractor, config.switch.pooling, config.retention.min_count, config.seed) == ("tiny-opt", "mean", 32, 1)
    assert len(said) == 1 and said[0].startswith("warning: model 'smollm2-135m' is not installed here")
    assert "LLAVA_CIT_OFFLINE" in said[0] and "\n" not in said[0]


def test_an_explicit_extractor_or_a_smollm2_track_is_left_as_given(no_smollm2):
    said = []
    assert switch_fallback("vision", ["switch.extractor=facebook/opt-125m"], said.append) == ["switch.extractor=facebook/opt-125m"]
    assert switch_fallback("smollm2", [], said.append) == []  # its model is SmolLM2: no fallback makes sense
    assert said == []


def test_the_yaml_presets_are_the_demo_configs_of_before_they_moved_out_of_python():
    """scripts/configs/demo/<track>.yaml hold exactly the dicts demo.py held on 2026-12-06 (a stored fixture), so
    every track's runs, and their matrices, are what they were."""
    from pathlib import Path

    from llava_cit.continual.demo import DEMO_TRACKS, tiny_switch_fallback

    before = json.loads((Path(__file__).parent / "fixtures" / "demo_presets_2026-12-06.json").read_text())
    assert list(DEMO_TRACKS) == ["vision", "text", "smollm2", "smollm2-llava"]
    for track in DEMO_TRACKS:
        assert demo_preset(track) == before["presets"][track], track
        assert tiny_switch_fallback(track) == before["tiny_switch_fallback"].get(track), track
    preset = demo_preset("vision")
    preset["train"]["lr"] = 1.0
    assert demo_preset("vision")["train"]["lr"] == 0.003  # each call a fresh mapping
