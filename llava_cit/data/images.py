"""Open images with a one-line error (or a counted skip) instead of a crash.

Pillow's decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`) is kept: an image over the limit (its warning
as well as its error) is a bad image like any unreadable one, never a crash and never decoded.
"""

from __future__ import annotations

import struct
import warnings
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from llava_cit.util.errors import UserError

IMAGE_FAULTS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error,
                Image.DecompressionBombError, Image.DecompressionBombWarning)


class BadImage(UserError):
    """A missing or unreadable image."""


@contextmanager
def _opened(path: Path):
    """The image file opened lazily (header only); every way it can fail is a BadImage."""
    if not path.is_file():
        raise BadImage(f"missing image: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refused, not decoded
            with Image.open(path) as image:
                yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(f"unreadable image: {path} (decompression bomb: more than {Image.MAX_IMAGE_PIXELS} "
                       f"pixels)") from None
    except IMAGE_FAULTS as err:
        raise BadImage(f"unreadable image: {path} ({type(err).__name__})") from None


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
