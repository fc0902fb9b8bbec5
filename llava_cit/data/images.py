"""Open images with a one-line error (or a counted skip) instead of a crash."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from llava_cit.errors import UserError


class BadImage(UserError):
    """A missing or unreadable image."""


def open_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise BadImage(f"missing image: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise BadImage(f"unreadable image: {path} ({type(err).__name__})") from None
