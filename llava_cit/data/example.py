"""The in-memory form of one instruction example, whatever its source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


@dataclass
class Example:
    """One conversation: `turns` are (instruction, answer) pairs, the first may hold `<image>`.

    An image comes either in memory (`image`, e.g. synthetic or Hugging Face rows) or as a file
    (`image_path`), opened only when a batch needs it (`load_image`), so a 100,000-record set never
    holds its images in memory.
    """

    id: str
    turns: list[tuple[str, str]]
    image: Image.Image | None = None
    task: str = ""
    input: str = ""  # optional text input (text track)
    meta: dict = field(default_factory=dict)
    image_path: Path | None = None

    @property
    def instruction(self) -> str:
        return self.turns[0][0]

    @property
    def answer(self) -> str:
        return self.turns[-1][1]

    @property
    def has_image(self) -> bool:
        return self.image is not None or self.image_path is not None

    def load_image(self) -> Image.Image | None:
        """The image as RGB, opened now from `image_path` if it is a file (raises BadImage if it cannot)."""
        if self.image is not None:
            return self.image
        if self.image_path is None:
            return None
        from llava_cit.data.images import open_image

        return open_image(self.image_path)
