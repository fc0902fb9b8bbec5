"""Evaluation throughput: batched vs batch-1; a mixed-task batch answered together (the gathered LoRA
product, and PEFT's `adapter_names`) vs a single-task batch; offline evaluation grouped by route vs a
single-task set; the published SwitchCIT path (a model per expert, one query at a time) vs grouped; and
scaling with the number of adapters loaded (2 / 8 / 32 / 128).

All numbers are ratios of things run side by side in one process on one model (a LLaVA built from
a config, random weights; generation is forced to a fixed length so every variant does the same work).

    python scripts/bench/eval_throughput.py --size tiny --out docs/bench/eval_throughput_tiny_cpu.json
"""

from __future__ import annotations

import argparse
import copy as copy_module
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# isort: off
import llava_cit  # noqa: F401  (filters library messages a user cannot act on, before peft is imported)
from peft import LoraConfig, get_peft_model
# isort: on

from llava_cit.data import synthetic
from llava_cit.data.collation import Encoder
from llava_cit.models.loading import LoadedModel
from llava_cit.models.tiny import llava_from_sizes
from llava_cit.serve.generation import generate_batch
from llava_cit.serve.routing import gathered_for, generate_routed
from llava_cit.train.trainer import language_model_target_regex
from scripts.bench.timing import clock
from switch import FeatureExtractor, SwitchNetwork
from switch.tiny import tiny_opt, words_of

SIZES = {  # vision (hidden, layers, image, patch), text (hidden, layers, intermediate)
    "tiny": ((64, 2, 32, 8), (128, 2, 256)),
    "small": ((384, 6, 224, 14), (1024, 12, 2816)),
    "base": ((768, 12, 336, 14), (2048, 16, 5632)),
}


def build(size: str, dtype) -> LoadedModel:
    (vh, vl, image, patch), (th, tl, ti) = SIZES[size]
    model, processor = llava_from_sizes(vh, vl, image, patch, th, tl, ti, vocab_size=32000)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return LoadedModel(model.to(device=device, dtype=dtype).eval(), processor, True, f"llava-{size}")


def with_adapters(loaded: LoadedModel, count: int):
    target = language_model_target_regex(loaded.model)
    model = None
    for i in range(count):
        cfg = LoraConfig(r=16, lora_alpha=32, target_modules=target, init_lora_weights=False)
        if model is None:
            model = get_peft_model(loaded.model, cfg, adapter_name=f"task{i}")
        else:
            model.add_adapter(f"task{i}", cfg)
    return model.to(loaded.model.device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grouped-batches", type=int, default=4, help="batches in the offline grouped comparison")
    parser.add_argument("--adapters", default="2,8,32,128", type=lambda text: [int(x) for x in text.split(",")],
                        help="numbers of loaded adapters in the scaling comparison (must include 2)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    loaded = build(args.size, dtype)
    encoder = Encoder(loaded)
    n = args.batch_size
    shapes = synthetic.generate("synth-shapes", n, split="test")
    ocr = synthetic.generate("synth-ocr", n, split="test")
    mixed = [shapes[i // 2] if i % 2 == 0 else ocr[i // 2] for i in range(n)]
    kwargs = {"max_new_tokens": args.new_tokens}
    # the switch that routes the mixed batch (tiny extractor; its cost is part of routed serving)
    retained = [ex.instruction for ex in synthetic.generate("synth-shapes", 16)] + \
        [ex.instruction for ex in synthetic.generate("synth-ocr", 16)]
    model_, tok = tiny_opt(words_of(retained))
    switch = SwitchNetwork(FeatureExtractor.from_model(model_, tok, "tiny-opt"), epochs=200, reject=True).fit(
        retained, ["task0"] * 16 + ["task1"] * 16)

    def force_length(model):
        model.generation_config.eos_token_id = None  # every variant generates exactly new_tokens tokens

    result = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
              "size": args.size, "dtype": str(dtype), "batch_size": n, "new_tokens": args.new_tokens,
              "parameters_m": sum(p.numel() for p in loaded.model.parameters()) / 1e6}
    peft = with_adapters(loaded, 2)
    force_length(peft.base_model.model)
    peft.set_adapter("task0")
    batched = clock(lambda: generate_batch(peft, encoder, shapes, **kwargs), args.repeats, warmup=True)
    one = clock(lambda: [generate_batch(peft, encoder, [ex], **kwargs) for ex in shapes], 1, warmup=True)
    result["batched_vs_batch1"] = {"batched_s": batched, "batch1_s": one, "speedup": one / batched}

    def route(batch):
        return [label for label, _ in switch.predict([ex.instruction for ex in batch])]

    def mixed_batch(batch, kernel):
        routes = route(batch)
        if kernel == "gathered":
            return generate_batch(peft, encoder, batch, gathered=gathered_for(peft), adapter_names=routes, **kwargs)
        return generate_batch(peft, encoder, batch, adapter_names=[r or "__base__" for r in routes], **kwargs)

    peft.set_adapter("task0")
    single_task = clock(lambda: generate_batch(peft, encoder, shapes, **kwargs), args.repeats, warmup=True)
    peft_mixed = clock(lambda: mixed_batch(mixed, "peft"), args.repeats, warmup=True)
    gathered_mixed = clock(lambda: mixed_batch(mixed, "gathered"), args.repeats, warmup=True)
    switch_only = clock(lambda: route(mixed), args.repeats, warmup=True)
    result["mixed_batch"] = {
        "single_task_batch_s": single_task, "peft_mixed_batch_s": peft_mixed, "gathered_mixed_batch_s": gathered_mixed,
        "switch_predict_s": switch_only,
        "peft_mixed_over_single_throughput": single_task / peft_mixed,
        "gathered_mixed_over_single_throughput": single_task / gathered_mixed,
        "switch_share_of_gathered_mixed_time": switch_only / gathered_mixed,
        "routes_in_batch": sorted({str(r) for r in route(mixed)})}
    # offline evaluation (llava-cit eval --run, the runner's matrix): route every query first, then generate route by
    # route in full batches with one active adapter; a mixed set vs a single-task set of the same size
    sets = args.grouped_batches * n
    single_set = synthetic.generate("synth-shapes", sets, split="test")
    mixed_set = [x for pair in zip(synthetic.generate("synth-shapes", sets // 2, split="test"),
                                   synthetic.generate("synth-ocr", sets // 2, split="test")) for x in pair]

    def grouped(batch):
        return generate_routed(peft, encoder, batch, route(batch), lambda _route: args.new_tokens, n)

    single_grouped = clock(lambda: generate_routed(peft, encoder, single_set, ["task0"] * sets,
                                                   lambda _route: args.new_tokens, n), args.repeats, warmup=True)
    mixed_grouped = clock(lambda: grouped(mixed_set), args.repeats, warmup=True)
    mixed_peft = clock(lambda: [mixed_batch(mixed_set[i:i + n], "peft") for i in range(0, sets, n)], args.repeats,
                       warmup=True)
    result["grouped_offline"] = {"samples": sets, "single_task_set_s": single_grouped, "mixed_set_grouped_s": mixed_grouped,
                                 "mixed_set_peft_mixed_batches_s": mixed_peft,
                                 "mixed_grouped_over_single_throughput": single_grouped / mixed_grouped,
                                 "mixed_peft_over_single_throughput": single_grouped / mixed_peft}
    # the published SwitchCIT path: a model per expert (its adapter merged), each query routed and answered alone
    experts = {}
    for name in ("task0", "task1"):
        copy = copy_module.deepcopy(peft)
        copy.set_adapter(name)
        experts[name] = copy.merge_and_unload().eval()
        force_length(experts[name])

    def published(batch):
        answers = []
        for ex in batch:
            (label, _), = switch.predict([ex.instruction])
            answers += generate_batch(experts.get(label, peft.get_base_model()), encoder, [ex], **kwargs)
        return answers

    one_by_one = clock(lambda: published(mixed_set), 1, warmup=False)
    experts.clear()
    result["published_path"] = {"samples": sets, "one_query_at_a_time_model_per_expert_s": one_by_one,
                                "grouped_offline_s": mixed_grouped, "grouped_speedup": one_by_one / mixed_grouped}
    scaling = {}
    for count in args.adapters:
        peft = with_adapters(LoadedModel(peft.unload(), loaded.processor, True, ""), count)
        force_length(peft.base_model.model)
        spread = [f"task{i % count}" for i in range(n)]  # the batch's rows over min(count, batch) adapters
        two = [f"task{i % 2}" for i in range(n)]  # the batch's rows over 2 of the loaded adapters
        gathered = gathered_for(peft)

        def timed(names, kernel=None, model=peft):
            return clock(lambda: generate_batch(model, encoder, mixed, adapter_names=names, gathered=kernel, **kwargs),
                         args.repeats, warmup=True)

        scaling[count] = {"gathered_spread_s": timed(spread, gathered), "gathered_two_used_s": timed(two, gathered),
                          "peft_spread_s": timed(spread), "peft_two_used_s": timed(two)}
        print(count, scaling[count], flush=True)
    result["adapters_loaded_scaling_s"] = scaling
    top = max(args.adapters)
    result["gathered_scaling_over_2"] = {count: scaling[count]["gathered_spread_s"] / scaling[2]["gathered_spread_s"]
                                         for count in args.adapters}
    result["peft_scaling_over_2"] = {count: scaling[count]["peft_spread_s"] / scaling[2]["peft_spread_s"]
                                     for count in args.adapters}
    result["largest_count"] = top
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
