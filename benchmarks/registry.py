"""One registry type for everything found by name: metrics (here), methods, tasks and model specs (llava_cit).

    METRICS = Registry("metric")

    @METRICS.register("exact_match")          # a decorator ...
    def exact_match_metric(samples): ...

    METRICS.add("rouge1", rouge1_metric)      # ... or a call

A name is registered once: a second registration of a name (an alias included) with another object is an error
naming both, so two plugins can never silently shadow each other. Registering the very same object again is a no-op
(a module imported twice). `get` of an unknown name raises `UnknownName` (a KeyError and a ValueError) listing the
known names. Lives in `benchmarks/` because that package stands alone (it never imports llava_cit), and llava_cit
uses the same type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateName(ValueError):
    pass


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # what is registered, for messages: "metric", "method", "task", "model spec"
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T, *aliases: str) -> T:
        for key in (name, *aliases):
            if not isinstance(key, str) or not key:
                raise ValueError(f"a {self.kind} needs a non-empty name, got {key!r}")
            held = self._items.get(key)
            if held is not None and held is not item:
                raise DuplicateName(f"{self.kind} '{key}' is registered twice ({_origin(held)} and {_origin(item)})")
        for key in (name, *aliases):
            self._items[key] = item
        return item

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """A decorator: `@REGISTRY.register("name")`."""
        return lambda item: self.add(name, item, *aliases)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownName(f"unknown {self.kind} '{name}' (known: {', '.join(self.names()) or 'none'})")
        return self._items[name]

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _origin(item: object) -> str:
    module = getattr(item, "__module__", None) or type(item).__module__
    name = getattr(item, "__qualname__", None) or getattr(item, "name", None) or type(item).__name__
    return f"{module}.{name}"
