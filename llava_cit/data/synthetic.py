"""Two synthetic vision tasks rendered with Pillow, deterministic by seed.

* `synth-shapes`: GQA-like visual reasoning on rendered scenes (colours, shapes,
  left/right positions, counts), single-word answers.
* `synth-ocr`: OCR-VQA-like text reading (a word on a sign, or a title on a book
  cover), the answer is the word.

Both are small enough for a 0.5M-parameter LLaVA to learn on a CPU in seconds, and
their answer vocabularies are disjoint, so tuning one adapter on one task after
the other overwrites the first (catastrophic forgetting).
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFont

from llava_cit.data.example import Example
from llava_cit.data.synthetic_text import TEXT_GENERATORS

IMAGE_SIZE = 32
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 205, 20),
    "purple": (140, 40, 170),
    "orange": (245, 130, 20),
}
SHAPES = ["circle", "square", "triangle"]
NUMBERS = ["one", "two", "three"]
WORDS = ["cat", "dog", "sun", "car", "box", "map", "pen", "cup", "hat", "key", "bus", "egg"]

SHAPE_QUESTIONS = {
    "color": "What color is the shape on the {side}?",
    "shape": "What shape is on the {side}?",
    "count": "How many shapes are there?",
}
OCR_QUESTIONS = {
    "sign": "What is written on the sign?",
    "book": "What is the title of this book?",
}
CAPTION_PROMPT = "Describe the image briefly."


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _scene(rng: random.Random):
    """One or two shapes per half; returns the image and a description of each slot."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    count = rng.randint(1, 3)
    slots = ["left", "right", "bottom"][:count] if count < 3 else ["left", "right", "bottom"]
    objects = {}
    boxes = {"left": (2, 3, 14, 15), "right": (18, 3, 30, 15), "bottom": (10, 18, 22, 30)}
    for slot in slots:
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        _draw_shape(draw, shape, boxes[slot], COLORS[color])
        objects[slot] = (color, shape)
    return image, objects


def shapes_example(rng: random.Random, index: int) -> Example:
    image, objects = _scene(rng)
    kind = rng.choice(list(SHAPE_QUESTIONS))
    if kind == "count":
        question, answer = SHAPE_QUESTIONS["count"], NUMBERS[len(objects) - 1]
    else:
        side = rng.choice([s for s in ("left", "right") if s in objects])
        question = SHAPE_QUESTIONS[kind].format(side=side)
        answer = objects[side][0] if kind == "color" else objects[side][1]
    return Example(id=f"synth-shapes-{index}", turns=[(f"<image>\n{question}", answer)], image=image)


def _font(size: int):
    return ImageFont.load_default(size=size)


def ocr_example(rng: random.Random, index: int) -> Example:
    word = rng.choice(WORDS)
    kind = rng.choice(list(OCR_QUESTIONS))
    if kind == "sign":
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (250, 250, 250))
        draw = ImageDraw.Draw(image)
        draw.text((2, 9), word, fill=(0, 0, 0), font=_font(13))
    else:
        cover = rng.choice(list(COLORS.values()))
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), cover)
        draw = ImageDraw.Draw(image)
        draw.rectangle((1, 8, 30, 23), fill=(255, 255, 255))
        draw.text((2, 9), word, fill=(0, 0, 0), font=_font(13))
    return Example(id=f"synth-ocr-{index}", turns=[(f"<image>\n{OCR_QUESTIONS[kind]}", word)], image=image)


def caption_example(rng: random.Random, index: int) -> Example:
    """Generic captioning over both kinds of image: the tiny base's pre-training data."""
    if rng.random() < 0.5:
        image, objects = _scene(rng)
        caption = " and ".join(f"{c} {s} {slot}" for slot, (c, s) in objects.items())
    else:
        item = ocr_example(rng, index)
        image, caption = item.image, f"the word {item.answer}"
    return Example(id=f"synth-caption-{index}", turns=[(f"<image>\n{CAPTION_PROMPT}", caption)], image=image)


GENERATORS = {"synth-shapes": shapes_example, "synth-ocr": ocr_example, "synth-caption": caption_example,
              **TEXT_GENERATORS}


def generate(name: str, count: int, seed: int = 0, split: str = "train") -> list[Example]:
    """`count` examples of task `name`; train and test draw from disjoint seeds."""
    offset = {"train": 0, "test": 1_000_003, "val": 2_000_003}[split]
    rng = random.Random(f"{name}:{seed + offset}")
    make = GENERATORS[name]
    examples = []
    for index in range(count):
        example = make(rng, index)
        example.id = f"{example.id}-{split}"
        example.task = name
        examples.append(example)
    return examples


def vocabulary() -> list[str]:
    """Every text the synthetic tasks use, for building the tiny tokenizer."""
    texts = [CAPTION_PROMPT, "the word and left right bottom", *SHAPE_QUESTIONS.values(), *OCR_QUESTIONS.values()]
    texts += ["left right", *COLORS, *SHAPES, *NUMBERS, *WORDS]
    return texts
