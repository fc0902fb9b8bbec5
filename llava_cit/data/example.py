"""One instruction example, whatever its source: what training reads, what evaluation asks, serves and scores (one
type from reading a file to scoring it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from llava_cit.data.prompts import without_image_token


@dataclass
class Example:
    """One conversation: `turns` are (instruction, answer) pairs. A vision example's first instruction holds
    `<image>` where the image goes, put there once by its reader (llava_cit.data.prompts.with_image_token).

    An image comes either in memory (`image`, e.g. synthetic or Hugging Face rows) or as a file
    (`image_path`), opened only when a batch needs it (`load_image`), so a 100,000-record set never
    holds its images in memory.

    `meta` is what the reader knows about the record beyond the conversation: every acceptable answer to the last
    turn (`answers`), why it cannot be served (`error`: a bad record kept for evaluation, counted as a bad sample),
    and what metrics and reports read (a benchmark's `dataset_name`/`type`, SARI's `source`, CT0's `constraint`).
    In evaluation, `id` is the sample's unique key.
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
    def question(self) -> str:
        """The last turn's question in words (no `<image>`): what a prediction row shows."""
        return without_image_token(self.turns[-1][0])

    @property
    def references(self) -> list[str]:
        """Every acceptable answer to the last turn: the reader's `answers` (none: a bad sample), else the turn's
        own answer."""
        answers = self.meta.get("answers")
        return [str(a) for a in answers] if answers is not None else [self.answer]

    @property
    def error(self) -> str | None:
        """Why the sample cannot be served (None: it can)."""
        return self.meta.get("error")

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
