"""The image of a chat request, fetched under a policy: a `data:` URL, a file under the images root, or (only when
allowed) a remote http(s) URL. Every refusal is a BadImage naming why; nothing is decoded before its size in bytes
and in pixels (read from the header) is within the limits, and Pillow's decompression-bomb guard stays on
(llava_cit.data.images)."""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from llava_cit.data.images import BadImage, open_image_bytes

DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<base64>;base64)?,(?P<data>.*)",
                      re.DOTALL)


@dataclass(frozen=True)
class ImagePolicy:
    root: Path | None = None  # files a request may name lie under it (None: no files)
    allow_remote: bool = False
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    remote_timeout_s: float = 10.0


def _short(url: str) -> str:
    return url if len(url) <= 60 else url[:57] + "..."


def _decoded_data_url(url: str, policy: ImagePolicy) -> bytes:
    match = DATA_URL.fullmatch(url)
    if match is None or not match["base64"]:
        raise BadImage("image_url: a data URL must be data:image/<type>;base64,<data>")
    if match["mime"] and not match["mime"].startswith("image/"):
        raise BadImage(f"image_url: a data URL of type {match['mime']} is not an image")
    encoded = match["data"]
    if len(encoded) * 3 // 4 > policy.max_bytes + 3:
        raise BadImage(f"image too large: about {len(encoded) * 3 // 4} bytes (at most {policy.max_bytes})")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("image_url: the data URL is not valid base64") from None


def _local_file(url: str, policy: ImagePolicy) -> tuple[bytes, str]:
    if policy.root is None:
        raise BadImage(f"image_url {_short(url)}: image files are not served (start the server with --images-root)")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise BadImage(f"image_url {_short(url)}: a file URL names no other host")
        relative = urllib.parse.unquote(parsed.path)
    else:
        relative = url
    root = policy.root.resolve()
    path = (root / relative).resolve()  # an absolute path stays absolute: it must still lie under the root
    if not path.is_relative_to(root):
        raise BadImage(f"image_url {_short(url)}: outside the images root")
    if not path.is_file():
        raise BadImage(f"image_url {_short(url)}: no such image under the images root")
    size = path.stat().st_size
    if size > policy.max_bytes:
        raise BadImage(f"image too large: {path.relative_to(root)} has {size} bytes (at most {policy.max_bytes})")
    return path.read_bytes(), str(path.relative_to(root))


def _remote(url: str, policy: ImagePolicy) -> bytes:
    if not policy.allow_remote:
        raise BadImage(f"image_url {_short(url)}: remote images are refused (start the server with "
                       f"--allow-remote-images to fetch them)")
    request = urllib.request.Request(url, headers={"User-Agent": "llava-cit-serve"})
    try:
        with urllib.request.urlopen(request, timeout=policy.remote_timeout_s) as response:  # noqa: S310 (http(s) only)
            data = response.read(policy.max_bytes + 1)
    except (OSError, ValueError) as err:
        raise BadImage(f"image_url {_short(url)}: cannot fetch it ({type(err).__name__})") from None
    if len(data) > policy.max_bytes:
        raise BadImage(f"image too large: {_short(url)} has more than {policy.max_bytes} bytes")
    return data


def fetch_image(url: str, policy: ImagePolicy) -> Image.Image:
    """The RGB image `url` names, or BadImage saying why it is refused."""
    if not isinstance(url, str) or not url:
        raise BadImage("image_url: an empty URL")
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme == "data":
        data, label = _decoded_data_url(url, policy), "the data URL image"
    elif scheme in ("http", "https"):
        data, label = _remote(url, policy), _short(url)
    elif scheme in ("", "file"):
        data, label = _local_file(url, policy)
    else:
        raise BadImage(f"image_url {_short(url)}: scheme '{scheme}' is not served (data:, file names under the "
                       f"images root, or http(s) with --allow-remote-images)")
    if len(data) > policy.max_bytes:
        raise BadImage(f"image too large: {len(data)} bytes (at most {policy.max_bytes})")
    return open_image_bytes(data, label, policy.max_pixels)
