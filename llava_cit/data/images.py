"""Open images with a one-line error (or a counted skip) instead of a crash.

Pillow's decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`) is kept: an image over the limit (its warning
as well as its error) is a bad image like any unreadable one, never a crash and never decoded.
"""

from __future__ import annotations

import io
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from llava_cit.util.errors import UserError

IMAGE_FAULTS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error,
                Image.DecompressionBombError, Image.DecompressionBombWarning)


class BadImage(UserError):
    """A missing or unreadable image."""


@contextmanager
def _opened(path: Path | BinaryIO, label: str | Path | None = None):
    """The image file (or in-memory file, named `label` in errors) opened lazily (header only); every way it can
    fail is a BadImage."""
    label = path if label is None else label
    if isinstance(path, Path) and not path.is_file():
        raise BadImage(f"missing image: {label}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refused, not decoded
            with Image.open(path) as image:
                yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(f"unreadable image: {label} (decompression bomb: more than {Image.MAX_IMAGE_PIXELS} "
                       f"pixels)") from None
    except IMAGE_FAULTS as err:
        raise BadImage(f"unreadable image: {label} ({type(err).__name__})") from None


def open_image(path: str | Path) -> Image.Image:
    with _opened(Path(path)) as image:
        image.load()
        return image.convert("RGB")


def check_image_header(path: str | Path) -> None:
    """Raise BadImage unless `path` is an image whose header Pillow reads, with a size within the limit
    (cheap: the pixels are not decoded)."""
    with _opened(Path(path)) as image:
        width, height = image.size
    if width <= 0 or height <= 0:
        raise BadImage(f"unreadable image: {path} (size {width}x{height})")


def open_image_bytes(data: bytes, label: str, max_pixels: int | None = None) -> Image.Image:
    """The image encoded in `data` as RGB (e.g. an upload), refused like `open_image` refuses a file; `max_pixels`: a
    limit stricter than Pillow's bomb guard, read from the header before any pixel is decoded."""
    with _opened(io.BytesIO(data), label) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise BadImage(f"image too large: {label} is {width}x{height} pixels (at most {max_pixels} pixels are "
                           f"accepted)")
        if width <= 0 or height <= 0:
            raise BadImage(f"unreadable image: {label} (size {width}x{height})")
        image.load()
        return image.convert("RGB")
