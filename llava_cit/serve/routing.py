"""Generation by route, for the routed model (llava_cit.serve.routed_model, the one place routes are decided):
given every query's adapter, generate route by route in full, homogeneous batches with one active adapter (no
per-sample adapter indexing in every LoRA layer), each query with its own generation budget, answers put back in
input order.

When a batch must be answered together (online serving: the queries arrive together and leave together),
`generate_mixed` answers each batch in one generate call, every row through its own adapter, with the
gathered low-rank product (llava_cit.serve.gathered_lora) or, where that cannot serve the model, PEFT's
`adapter_names` path.

An adapter of None (the switch rejected the query as unlike every learned task, or the untrained base is scored) is
the bare base: every adapter off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from peft import PeftModel
from peft.utils.other import ModulesToSaveWrapper

from llava_cit.data.collation import Encoder
from llava_cit.data.example import Example
from llava_cit.serve.gathered_lora import GatheredLoRA
from llava_cit.serve.generation import Outcome, generate_safely
from switch.errors import SwitchError
from switch.instruction import switch_text


def switch_problem(example: Example) -> str | None:
    """Why the switch cannot route `example` (nothing left of its instruction to read), or None."""
    try:
        switch_text(example.instruction, example.input)
    except SwitchError as err:
        return str(err)
    return None


@contextmanager
def active_adapter(model, route: str | None) -> Iterator[None]:
    """`route`'s adapter active for the duration (None: every adapter off, the bare base answers)."""
    if not isinstance(model, PeftModel):
        with nullcontext():
            yield
        return
    if route is None:
        with model.disable_adapter():
            yield
        return
    previous = model.active_adapter
    model.set_adapter(route)
    try:
        yield
    finally:
        if previous in model.peft_config:
            model.set_adapter(previous)


Budgets = Callable[[str | None], int] | list[int]  # by route, or one per example


def _per_example(budget: Budgets, routes: list[str | None]) -> list[int]:
    return list(budget) if isinstance(budget, list) else [budget(route) for route in routes]


def generate_routed(model, encoder: Encoder, examples: list[Example], routes: list[str | None],
                    budget: Budgets, batch_size: int | str = 16,
                    check: Callable[[Example], str | None] | None = None,
                    progress: Callable[[int], None] | None = None) -> list[Outcome]:
    """(answer, error) per example; example i is answered by the adapter `routes[i]` with its budget (a
    function of the route, or one per example); one group per (route, budget)."""
    budgets = _per_example(budget, routes)
    groups: dict[tuple[str | None, int], list[int]] = {}
    for index, route in enumerate(routes):
        groups.setdefault((route, budgets[index]), []).append(index)
    outcomes: list[Outcome | None] = [None] * len(examples)
    for (route, tokens), indices in groups.items():
        with active_adapter(model, route):
            answers = generate_safely(model, encoder, [examples[i] for i in indices], batch_size, tokens,
                                      check=check, progress=progress)
        for index, outcome in zip(indices, answers):
            outcomes[index] = outcome
    return outcomes


def gathered_for(model) -> GatheredLoRA | None:
    """The model's adapters stacked for mixed batches (built once per set of loaded adapters), or None when
    they cannot be gathered (GatheredLoRA.unsupported says why)."""
    if GatheredLoRA.unsupported(model) is not None:
        return None
    key = tuple(model.peft_config)
    cached = getattr(model, "_llava_cit_gathered", None)
    if cached is None or cached[0] != key:
        cached = (key, GatheredLoRA(model))
        model._llava_cit_gathered = cached
    return cached[1]


def generate_mixed(model, encoder: Encoder, examples: list[Example], routes: list[str | None],
                   budget: Budgets, batch_size: int | str = 16,
                   check: Callable[[Example], str | None] | None = None,
                   progress: Callable[[int], None] | None = None, kernel: str = "gathered") -> list[Outcome]:
    """(answer, error) per example; batches of `batch_size` (by prompt length), each answered in one generate
    call with row i served by `routes[i]` (None: the bare base). kernel: "gathered" (falls back to PEFT
    where the adapters cannot be gathered) or "peft" (PEFT's `adapter_names`)."""
    if not isinstance(model, PeftModel):
        return generate_safely(model, encoder, examples, batch_size, _per_example(budget, routes), check=check,
                               progress=progress)
    if any(not ex.has_image for ex in examples) and any(
            isinstance(m, ModulesToSaveWrapper) for m in model.modules()):
        # per-adapter module copies (LLaVA's projector) see one row per image: rows without one cannot be
        # matched to their adapter inside a mixed batch, so these are answered route by route
        return generate_routed(model, encoder, examples, routes, budget, batch_size, check, progress)
    gathered = gathered_for(model) if kernel == "gathered" else None
    names = [route if route is not None else "__base__" for route in routes]
    return generate_safely(model, encoder, examples, batch_size, _per_example(budget, routes), adapter_names=names,
                           check=check, progress=progress, gathered=gathered)
