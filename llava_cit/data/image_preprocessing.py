"""LLaVA-1.5's image preprocessing: pad to a square with the processor's mean colour, then resize.

LLaVA-1.5 trains and evaluates with `image_aspect_ratio: pad` (llava/mm_utils.py `expand2square`):
the image is centred on a square canvas filled with the CLIP mean colour before the processor
resizes it, so nothing is cut. llava-hf's `CLIPImageProcessor` alone resizes the short side and
centre-crops, which cuts the top and bottom bands of a portrait book cover (title, author).
`crop` keeps the processor's own behaviour (for dynamic-resolution families such as Qwen2.5-VL: the image as it
is). `auto` (the default): `pad` for a LLaVA-1.5 processor, the processor's own for every other family.
"""

from __future__ import annotations

from PIL import Image

ASPECT_RATIOS = ("auto", "pad", "crop")


def resolve_aspect_ratio(value: str, llava_processor: bool) -> str:
    """`auto` as `pad` (LLaVA-1.5) or `crop` (the processor's own); `pad` and `crop` as they are."""
    if value not in ASPECT_RATIOS:
        raise ValueError(f"unknown image_aspect_ratio '{value}' (known: {', '.join(ASPECT_RATIOS)})")
    if value == "auto":
        return "pad" if llava_processor else "crop"
    return value


def expand_to_square(image: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """LLaVA's `expand2square`: centre `image` on a square canvas of `background` colour."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def mean_colour(image_processor) -> tuple[int, int, int]:
    mean = getattr(image_processor, "image_mean", None) or [0.48145466, 0.4578275, 0.40821073]
    return tuple(int(value * 255) for value in mean)


def prepare_image(image: Image.Image, aspect_ratio: str, image_processor) -> Image.Image:
    image = image.convert("RGB")
    if aspect_ratio == "pad":
        return expand_to_square(image, mean_colour(image_processor))
    if aspect_ratio == "crop":
        return image
    raise ValueError(f"unknown image_aspect_ratio '{aspect_ratio}' (known: pad, crop)")
