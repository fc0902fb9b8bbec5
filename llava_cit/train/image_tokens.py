"""How many tokens one image of a given size becomes, per family, for `llava-cit plan` (no processor files needed:
the model's config.json and the family's published preprocessing settings, counted with transformers' own helpers).

    fixed resolution (LLaVA-1.5, any other)   (image_size / patch_size)^2 whatever the image (LLaVA: 336/14 -> 576)
    gemma3                                    mm_tokens_per_image (256; pan-and-scan off, as published)
    qwen2_vl, qwen2_5_vl, qwen3_vl            the image resized to multiples of patch x merge within the published
                                              min/max pixels (56x56 .. 28x28x1280), one token per merge^2 patches
    internvl                                  448-px tiles by aspect ratio (1..12, + a thumbnail when tiled), each
                                              (448/14)^2 x downsample_ratio^2 = 256 tokens
    llava_onevision                           the anyres grid: the base 729 + the unpadded grid + one newline per row
                                              (transformers' LlavaOnevisionProcessor count)
    idefics3 (Idefics3, SmolVLM)              the image's longest edge resized to 4 x 364 px, split into 364-px tiles
                                              + the whole image, each (364/14)^2 / scale_factor^2 tokens
"""

from __future__ import annotations

import math

DEFAULT_SIZE = (480, 640)  # height, width: a typical photo (GQA's images are around 500 x 375)
QWEN_PIXELS = (56 * 56, 28 * 28 * 1280)  # Qwen2-VL / Qwen2.5-VL's published min_pixels, max_pixels
INTERNVL_TILES = 12  # InternVL3-*-hf's published max_patches
IDEFICS3_TILE_EDGES = 4  # Idefics3-8B's published size: longest_edge 4 x 364


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def image_tokens(config, size: tuple[int, int] | None = None) -> int:
    """Tokens for one image of `size` (height, width; None: DEFAULT_SIZE) in a model of this config."""
    height, width = size or DEFAULT_SIZE
    kind = config.model_type
    vision = config.vision_config
    if kind == "gemma3":
        return config.mm_tokens_per_image
    if kind in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        patch, merge = vision.patch_size, vision.spatial_merge_size
        h, w = smart_resize(height, width, factor=patch * merge, min_pixels=QWEN_PIXELS[0], max_pixels=QWEN_PIXELS[1])
        return (h // patch) * (w // patch) // merge ** 2
    if kind == "internvl":
        from transformers import GotOcr2ImageProcessorPil

        tile, patch = _pair(vision.image_size)[0], _pair(vision.patch_size)[0]
        processor = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=True,
                                             min_patches=1, max_patches=INTERNVL_TILES)
        tiles = processor.get_number_of_image_patches(height, width, {})
        return tiles * int((tile // patch) ** 2 * config.downsample_ratio ** 2)
    if kind == "llava_onevision":
        from transformers import LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor

        processor = LlavaOnevisionProcessor.__new__(LlavaOnevisionProcessor)  # its count, without a tokenizer
        processor.image_processor = LlavaOnevisionImageProcessorPil(image_grid_pinpoints=config.image_grid_pinpoints)
        processor.num_image_tokens = (vision.image_size // vision.patch_size) ** 2
        processor.vision_aspect_ratio = config.vision_aspect_ratio
        return processor._get_number_of_features(height, width, vision.image_size, vision.image_size)
    if kind == "idefics3":
        tile = vision.image_size
        scale = IDEFICS3_TILE_EDGES * tile / max(height, width)
        h, w = math.ceil(height * scale), math.ceil(width * scale)
        tiles = math.ceil(h / tile) * math.ceil(w / tile)
        per_tile = (tile // vision.patch_size) ** 2 // config.scale_factor ** 2
        return (tiles + (1 if tiles > 1 else 0)) * per_tile
    image, patch = _pair(vision.image_size)[0], _pair(vision.patch_size)[0]
    return (image // patch) ** 2
