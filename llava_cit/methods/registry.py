"""Methods by name; each method module registers itself in one line."""

from __future__ import annotations

from llava_cit.errors import UserError
from llava_cit.methods.base import Method

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def known_methods() -> list[Method]:
    get_method("switchcit")  # imports every built-in method module
    return [METHODS[name] for name in sorted(METHODS)]


def get_method(name: str) -> Method:
    import llava_cit.methods.full_sft
    import llava_cit.methods.multitask
    import llava_cit.methods.rehearsal
    import llava_cit.methods.seq_lora
    import llava_cit.methods.switchcit  # noqa: F401

    if name not in METHODS:
        raise UserError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]
