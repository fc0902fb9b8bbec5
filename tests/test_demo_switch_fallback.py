"""The tiny demos' switch reads SmolLM2; where it can be neither found nor fetched, the demo says so and falls back to
the random tiny extractor's settings instead of dying."""

import json

import pytest

from llava_cit.config import load_config
from llava_cit.demo import DEMO_CONFIGS, switch_fallback


@pytest.fixture
def no_smollm2(tmp_path, monkeypatch):
    import llava_cit.models.packaged as packaged

    monkeypatch.setenv("LLAVA_CIT_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("LLAVA_CIT_OFFLINE", "1")
    monkeypatch.setattr(packaged, "installed_path", lambda name: None)


def test_without_smollm2_the_text_demo_falls_back_to_the_tiny_switch_and_says_so(no_smollm2):
    said = []
    overrides = switch_fallback("text", ["seed=1"], said.append)
    config = load_config(None, overrides, base=json.loads(json.dumps(DEMO_CONFIGS["text"])))
    assert (config.switch.extractor, config.switch.pooling, config.retention.min_count, config.seed) == ("tiny-opt", "mean", 32, 1)
    assert len(said) == 1 and said[0].startswith("warning: model 'smollm2-135m' is not installed here")
    assert "LLAVA_CIT_OFFLINE" in said[0] and "\n" not in said[0]


def test_an_explicit_extractor_or_a_smollm2_track_is_left_as_given(no_smollm2):
    said = []
    assert switch_fallback("vision", ["switch.extractor=facebook/opt-125m"], said.append) == ["switch.extractor=facebook/opt-125m"]
    assert switch_fallback("smollm2", [], said.append) == []  # its model is SmolLM2: no fallback makes sense
    assert said == []
