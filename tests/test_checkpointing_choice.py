"""train.gradient_checkpointing: auto decides from the plan's memory formula; runs written before resume."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from llava_cit.config import LoraSettings, RunConfig, TrainSettings, load_config
from llava_cit.continual.run_directory import open_run_directory
from llava_cit.data import synthetic
from llava_cit.data.collation import Encoder
from llava_cit.models.loading import LoadedModel
from llava_cit.models.tiny import tiny_llava
from llava_cit.train import checkpointing
from llava_cit.train.trainer import add_adapter
from llava_cit.util.errors import UserError

GB = 1024 ** 3


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_llava(seed=0)
    loaded = LoadedModel(model, processor, True, "tiny-llava")
    peft = add_adapter(model, "t", LoraSettings(r=4, alpha=8), True)
    return peft, Encoder(loaded), synthetic.generate("synth-shapes", 8)


def test_config_values_are_taken_as_given(tiny):
    model, encoder, examples = tiny
    for value in (True, False):
        choice = checkpointing.choose(TrainSettings(gradient_checkpointing=value), model, examples, encoder, 1)
        assert choice.on is value and "in the config" in choice.reason


def test_auto_turns_it_on_only_when_the_batch_does_not_fit(tiny):
    model, encoder, examples = tiny
    settings = TrainSettings(batch_size=4, max_length=512)
    roomy = checkpointing.choose(settings, model, examples, encoder, free_bytes=80 * GB)
    assert roomy.on is False and "fits 80.0 GB available" in roomy.reason
    tokens = checkpointing.longest_sample(examples, encoder, settings.max_length)
    without = checkpointing.estimated_peak_gb(model, settings, tokens, checkpointing=False)
    assert without > checkpointing.estimated_peak_gb(model, settings, tokens, checkpointing=True)
    just_short = int(without * (1 + checkpointing.MARGIN) * GB) - 1  # fits bare, not with the margin
    tight = checkpointing.choose(settings, model, examples, encoder, free_bytes=just_short)
    assert tight.on is True and "does not fit" in tight.reason
    enough = checkpointing.choose(settings, model, examples, encoder, free_bytes=just_short + GB // 100)
    assert enough.on is False


def test_auto_is_off_on_a_cpu(tiny, monkeypatch):
    model, encoder, examples = tiny
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    choice = checkpointing.choose(TrainSettings(), model, examples, encoder)
    assert choice.on is False and "CPU" in choice.reason


def test_bad_value_is_one_line():
    with pytest.raises(UserError, match="train.gradient_checkpointing"):
        load_config(None, ["tasks=[synth-shapes]", "train.gradient_checkpointing=sometimes"])


def test_a_run_written_before_new_settings_still_resumes(tmp_path):
    """A config.yaml without the settings added since (written at their defaults then) and with another
    gradient_checkpointing (how, not what) opens; a change of what is learned is still refused."""
    current = load_config(None, ["tasks=[synth-shapes]"]).to_dict()
    old = yaml.safe_load(yaml.safe_dump(current))
    old["train"].pop("group_by_length")
    old["train"]["gradient_checkpointing"] = False
    old["image_aspect_ratio"] = "pad"  # what older code wrote; `auto` pads for every model that code could load
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    open_run_directory(tmp_path, current, force=False).release()
    changed = dataclasses.replace(RunConfig(tasks=["synth-shapes"]), seed=1).to_dict()
    with pytest.raises(UserError, match="seed"):
        open_run_directory(tmp_path, changed, force=False)


def test_turning_it_off_removes_the_input_grad_hooks_so_the_frozen_vision_tower_leaves_the_graph():
    import torch

    model, _ = tiny_llava(seed=0)
    peft = add_adapter(model, "t", LoraSettings(r=4, alpha=8, train_projector=False), True)
    vision = model.model.vision_tower
    pixels = torch.randn(1, 3, model.config.vision_config.image_size, model.config.vision_config.image_size)
    tracked = []  # whether the frozen vision tower's output carries a graph (a backward pass through it)
    peft.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    tracked.append(vision(pixels).last_hidden_state.requires_grad)
    peft.gradient_checkpointing_disable()  # what transformers offers: for a get_peft_model model its hooks stay
    tracked.append(vision(pixels).last_hidden_state.requires_grad)
    checkpointing.turn_off(peft)
    tracked.append(vision(pixels).last_hidden_state.requires_grad)
    assert tracked == [True, True, False]
    assert not getattr(model, "is_gradient_checkpointing", False)
