"""DeepSpeed ZeRO-3 for one stage at a time: the weights are partitioned while a stage trains, and whole again after.

Under ZeRO-3 every rank holds a slice of each weight during training (DeepSpeed gathers a layer's weights for its
forward and frees them after). The runner reads whole weights between stages: it evaluates (sharded, with a
different number of batches per rank), saves the stage's adapter, and adds the next one. So when a stage's
training ends, `release_partitioned_weights` gathers every weight whole onto every rank, removes DeepSpeed's hooks
and per-parameter state, and leaves the model as DDP would; the next stage's Trainer partitions it again.

The gain is the training peak: frozen base weights, gradients and optimizer states partitioned across ranks.
Between stages each rank holds the whole model (as with DDP or ZeRO-2), so the model must fit one device for
evaluation; `llava-cit plan` reports both.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

# what DeepSpeed's ZeRO-3 hooks attach to a module, besides its `ds_*` attributes (deepspeed/runtime/zero/)
DEEPSPEED_MODULE_ATTRIBUTES = frozenset({"_external_params", "all_parameters", "_original_parameters",
                                         "applied_pre_backward_ref_cnt", "pre_bwd_fn", "post_bwd_fn"})


def parameter_attributes(model: torch.nn.Module) -> dict[int, set[str]]:
    """Each parameter's own attributes before DeepSpeed adds its (`ds_id`, `ds_tensor`, `all_gather`, ...)."""
    return {id(p): set(vars(p)) for p in model.parameters()}


def is_partitioned(model: torch.nn.Module) -> bool:
    return any(hasattr(p, "ds_id") for p in model.parameters())


def release_partitioned_weights(engine, model: torch.nn.Module, params_before: dict[int, set[str]]) -> int:
    """Make `model` (the module `engine`, a DeepSpeedEngine, wraps) whole on every rank and free of DeepSpeed:
    gather every partitioned weight (a collective: every rank calls this), destroy the engine (its hooks go),
    put the whole tensors back as plain parameters and drop what DeepSpeed attached to parameters and modules.
    Returns the number of parameters made whole."""
    import deepspeed

    partitioned = [p for p in model.parameters() if hasattr(p, "ds_id")]
    whole = []
    for param in partitioned:  # one weight at a time: the whole model once, plus one weight in flight
        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            whole.append(param.data.detach().clone())
    if engine is not None:
        engine.destroy()
    for param, data in zip(partitioned, whole):
        param.data = data
        for name in set(vars(param)) - params_before.get(id(param), set()):
            delattr(param, name)
    for module in model.modules():
        if "_original_parameters" in vars(module):  # DeepSpeed's ZeROOrderedDict in place of `_parameters`
            module._parameters = dict(OrderedDict.items(module._parameters))
        for name in list(vars(module)):  # DeepSpeed's names only: the Trainer's (gradient checkpointing) stay
            if name.startswith("ds_") or name in DEEPSPEED_MODULE_ATTRIBUTES:
                delattr(module, name)
    # transformers would load any later model (a switch's extractor on the ranks that read it back) straight into
    # partitions, collectively: the next stage's Trainer turns ZeRO-3 back on for its own model
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    return len(partitioned)
