"""The gathered mixed-adapter LoRA path gives PEFT's own `adapter_names` outputs."""

from __future__ import annotations

import pytest
import torch

from llava_cit.config import LoraSettings
from llava_cit.data import synthetic
from llava_cit.data.collation import Encoder
from llava_cit.models.loading import LoadedModel
from llava_cit.models.tiny import tiny_llava
from llava_cit.serve.gathered_lora import GatheredLoRA
from llava_cit.serve.generation import generate_batch
from llava_cit.train.trainer import add_adapter


def _loaded_with_adapters(ranks=(8, 8, 8)):
    model, processor = tiny_llava(seed=0)
    loaded = LoadedModel(model, processor, True, "tiny-llava")
    peft = model
    for k, rank in enumerate(ranks):
        peft = add_adapter(peft, f"task{k}", LoraSettings(r=rank, alpha=2 * rank, dropout=0.0), True)
    torch.manual_seed(1)
    with torch.no_grad():  # every adapter (LoRA B and projector copy) different from the base and each other
        for name, p in peft.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.05)
    return loaded, peft.eval()


def _batch(loaded, n):
    examples = [x for pair in zip(synthetic.generate("synth-shapes", n, split="test"),
                                  synthetic.generate("synth-ocr", n, split="test")) for x in pair][:n]
    examples = [ex.__class__(**{**ex.__dict__, "image": ex.load_image()}) for ex in examples]
    return examples, Encoder(loaded).generation_batch(examples)


@pytest.mark.parametrize("ranks", [(8, 8, 8), (4, 8, 16)])
def test_gathered_logits_equal_peft_mixed_batch(ranks):
    loaded, peft = _loaded_with_adapters(ranks)
    routes = ["task0", "task1", None, "task2", "task1", None, "task0", "task2"]
    _, batch = _batch(loaded, len(routes))
    with torch.no_grad():
        reference = peft(**batch, adapter_names=[r or "__base__" for r in routes]).logits
        gathered = GatheredLoRA(peft)
        with gathered.rows(routes):
            mixed = peft(**batch).logits
        with peft.disable_adapter():
            base_rows = peft(**batch).logits
        peft.set_adapter("task1")
        single = peft(**batch).logits
    assert not torch.allclose(reference[0], reference[1], atol=1e-3)  # the adapters really differ
    torch.testing.assert_close(mixed, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mixed[2], base_rows[2], rtol=1e-4, atol=1e-5)
    # PEFT's own single-adapter path still works on the re-pointed (stacked) weights
    torch.testing.assert_close(single[1], reference[1], rtol=1e-4, atol=1e-5)


def test_gathered_generation_equals_peft_generation():
    loaded, peft = _loaded_with_adapters()
    routes = ["task2", None, "task0", "task1", "task1", "task0"]
    examples, _ = _batch(loaded, len(routes))
    encoder = Encoder(loaded)
    reference = generate_batch(peft, encoder, examples, 8, adapter_names=[r or "__base__" for r in routes])
    with GatheredLoRA(peft).rows(routes):
        gathered = generate_batch(peft, encoder, examples, 8)
    assert gathered == reference
    assert len(set(reference)) > 1


def test_unsupported_models_are_named():
    model, _ = tiny_llava(seed=0)
    assert GatheredLoRA.unsupported(model) == "not a PEFT model"
    from peft import LoraConfig, get_peft_model

    dora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    assert "DoRA" in GatheredLoRA.unsupported(dora)
    with pytest.raises(ValueError):
        GatheredLoRA(dora)


def test_unknown_route_is_refused():
    _, peft = _loaded_with_adapters()
    with pytest.raises(KeyError, match="nope"):
        with GatheredLoRA(peft).rows(["task0", "nope"]):
            pass


def test_run_served_together_equals_route_by_route_and_loads_adapters_lazily(tmp_path):
    from conftest import tiny_run_config

    from llava_cit.config import load_config
    from llava_cit.continual.runner import ContinualRunner
    from llava_cit.serve.run_server import RunServer

    ContinualRunner(load_config(None, base=tiny_run_config()), tmp_path / "r").run()
    queries = [x for pair in zip(synthetic.generate("synth-shapes", 6, split="test"),
                                 synthetic.generate("synth-ocr", 6, split="test")) for x in pair]
    server = RunServer(tmp_path / "r", lazy_adapters=True)
    assert server.loaded_adapters == ["synth-shapes"]  # the other waits for a query routed to it
    grouped = server.answer(queries, batch_size=6)
    assert set(server.loaded_adapters) == {"synth-shapes"} | {route for _, route, _, _ in grouped if route}
    together = server.answer(queries, batch_size=6, together=True)
    assert together == grouped
    assert len({route for _, route, _, _ in grouped}) >= 2  # the batches really were mixed
