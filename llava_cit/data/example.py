"""The in-memory form of one instruction example, whatever its source."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Example:
    """One conversation: `turns` are (instruction, answer) pairs, the first may hold `<image>`."""

    id: str
    turns: list[tuple[str, str]]
    image: Image.Image | None = None
    task: str = ""
    input: str = ""  # optional text input (text track)
    meta: dict = field(default_factory=dict)

    @property
    def instruction(self) -> str:
        return self.turns[0][0]

    @property
    def answer(self) -> str:
        return self.turns[-1][1]
