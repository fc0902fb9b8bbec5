"""The paper's starting point assembled from tiny stand-ins of its three parts, with the real key names and
file layout: a Llama (Vicuna) folder, a CLIPModel folder, LLaVA's mm_projector.bin."""

from __future__ import annotations

import pickle

import pytest
import torch
from typer.testing import CliRunner

from llava_cit.cli import app


def _vicuna(folder):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "USER", ":", "ASSISTANT", "what", "is", "written", "?", "a", "sign", "."]
    core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         max_position_embeddings=256))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def _clip(folder):
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(1)
    config = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": 99},
                        vision_config={"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                        projection_dim=16)
    model = CLIPModel(config)
    model.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return model


def _projector(path, vision_hidden=48, text_hidden=64):
    torch.manual_seed(2)
    tensors = {"model.mm_projector.0.weight": torch.randn(text_hidden, vision_hidden),
               "model.mm_projector.0.bias": torch.randn(text_hidden),
               "model.mm_projector.2.weight": torch.randn(text_hidden, text_hidden),
               "model.mm_projector.2.bias": torch.randn(text_hidden)}
    torch.save(tensors, path)  # as LLaVA's pre-training saves mm_projector.bin
    return tensors


def test_stage1_model_assembled_from_its_three_parts(tmp_path):
    vicuna, clip, projector = _vicuna(tmp_path / "vicuna"), _clip(tmp_path / "clip"), _projector(tmp_path / "mm.bin")
    out = tmp_path / "stage1"
    result = CliRunner().invoke(app, ["data", "stage1", "--vicuna", str(tmp_path / "vicuna"), "--clip",
                                      str(tmp_path / "clip"), "--projector", str(tmp_path / "mm.bin"), "--out", str(out),
                                      "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    from llava_cit.models.loading import load_model

    loaded = load_model(str(out))
    model, tokenizer = loaded.model, loaded.processor.tokenizer
    assert loaded.is_vision
    assert model.config.vision_feature_layer == -2 and model.config.vision_feature_select_strategy == "default"
    assert tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_index
    assert tokenizer.pad_token is not None
    proj = model.model.multi_modal_projector
    assert torch.equal(proj.linear_1.weight, projector["model.mm_projector.0.weight"])
    assert torch.equal(proj.linear_2.bias, projector["model.mm_projector.2.bias"])
    assert torch.equal(model.model.language_model.layers[1].mlp.up_proj.weight, vicuna.model.layers[1].mlp.up_proj.weight)
    assert torch.equal(model.lm_head.weight[: vicuna.config.vocab_size], vicuna.lm_head.weight)
    tower = model.model.vision_tower.state_dict()
    reference = {k.removeprefix("vision_model."): v for k, v in clip.vision_model.state_dict().items()}
    key = next(k for k in tower if "layers.2.mlp.fc1.weight" in k)
    assert torch.equal(tower[key], reference[key.removeprefix("vision_model.")])
    # it answers an image question through the toolkit's own prompt path
    from PIL import Image

    from llava_cit.data.collation import Encoder
    from llava_cit.data.example import Example
    from llava_cit.serve.generation import generate_batch

    example = Example(id="0", turns=[("<image>\nwhat is written ?", "a sign")], image=Image.new("RGB", (50, 40)))
    assert len(generate_batch(model, Encoder(loaded), [example], 3)) == 1
    # never overwritten
    again = CliRunner().invoke(app, ["data", "stage1", "--vicuna", str(tmp_path / "vicuna"), "--clip",
                                     str(tmp_path / "clip"), "--projector", str(tmp_path / "mm.bin"), "--out", str(out)])
    assert again.exit_code != 0 and "already holds a model" in str(again.exception or again.output)


class Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_a_projector_file_with_objects_is_refused_without_unpickling(tmp_path, capsys):
    from llava_cit.models.stage1 import read_projector
    from llava_cit.util.errors import UserError

    path = tmp_path / "mm_projector.bin"
    with open(path, "wb") as handle:
        pickle.dump({"model.mm_projector.0.weight": Payload()}, handle)
    with pytest.raises(UserError, match="refused to unpickle"):
        read_projector(path)
    assert "unpickled!" not in capsys.readouterr().out
