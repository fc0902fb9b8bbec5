"""One routing path for the runner's evaluation and for serving: route every query first, then generate
route by route in full, homogeneous batches with one active adapter (no per-sample adapter indexing in
every LoRA layer), each route with its task's own generation budget, answers put back in input order.

A route of None (the switch rejected the query as unlike every learned task) is served by the bare base.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from peft import PeftModel

from llava_cit.collation import Encoder
from llava_cit.data.example import Example
from llava_cit.generation import Outcome, generate_safely
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


def generate_routed(model, encoder: Encoder, examples: list[Example], routes: list[str | None],
                    budget: Callable[[str | None], int], batch_size: int = 16,
                    check: Callable[[Example], str | None] | None = None,
                    progress: Callable[[int], None] | None = None) -> list[Outcome]:
    """(answer, error) per example; example i is answered by the adapter `routes[i]`."""
    groups: dict[str | None, list[int]] = {}
    for index, route in enumerate(routes):
        groups.setdefault(route, []).append(index)
    outcomes: list[Outcome | None] = [None] * len(examples)
    for route, indices in groups.items():
        with active_adapter(model, route):
            answers = generate_safely(model, encoder, [examples[i] for i in indices], batch_size, budget(route),
                                      check=check, progress=progress)
        for index, outcome in zip(indices, answers):
            outcomes[index] = outcome
    return outcomes
