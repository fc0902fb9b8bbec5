"""Miniatures of the field's task kinds, rendered with Pillow on the synthetic scenes (llava_cit.data.synthetic), for
the CPU miniatures of UCIT, CoIN and MLLM-DCL (`ucit-mini`, `coin-mini`, `mllm-dcl-mini`):

* `mini-classify` — name the shape (ImageNet / ImageNet-R: a class label);
* `mini-choice` — lettered options, answer with the letter (ScienceQA, ArxivQA, IconQA);
* `mini-caption` — a brief caption, five references per image (VizWiz-caption, Flickr30k: CIDEr);
* `mini-count` — how many shapes are left after removing some (CLEVR-Math);
* `mini-vqa` — a colour question with ten human answers, not all alike (VQAv2, VizWiz: VQA accuracy);
* `mini-grounding` — the box of a described shape, "[x1, y1, x2, y2]" normalised as LLaVA-1.5 writes it (RefCOCO);
* `mini-presence` — is there a shape of a colour, yes or no (the medical and finance domains' short answers).

Deterministic by seed; each has its own instruction wording, so the switch can tell them apart. The tiny LLaVA of the
miniatures (`tiny-llava-seq`) has these words in its vocabulary (`vocabulary()`).
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from llava_cit.data import synthetic
from llava_cit.data.example import Example

SLOT_BOXES = {"left": (2, 3, 14, 15), "right": (18, 3, 30, 15), "bottom": (10, 18, 22, 30)}  # synthetic._scene's
LETTERS = ("A", "B", "C")
NUMBER_WORDS = ("zero", "one", "two", "three")
VQA_SUFFIX = "Answer the question using a single word or phrase."
CHOICE_SUFFIX = "Answer with the option's letter from the given choices directly."
CLASSIFY_QUESTION = "What is the object in the image?"
CAPTION_QUESTION = "Generate a brief caption for the image."
COUNT_QUESTION = "Subtract all {color} shapes. How many shapes are left?"
CHOICE_QUESTION = "Which shape is on the {side}?"
VQA_QUESTION = "What color is the shape on the {side}?"
GROUNDING_QUESTION = "Please provide the bounding box coordinate of the region this sentence describes: {color} {shape}."
PRESENCE_QUESTION = "Is there a {color} shape in the image? Only answer with yes or no directly."


def box_text(slot: str) -> str:
    """The slot's box as LLaVA-1.5 writes one: corners over the (square) image side, two decimals."""
    size = synthetic.IMAGE_SIZE
    return "[" + ", ".join(f"{v / size:.2f}" for v in SLOT_BOXES[slot]) + "]"


def _single_shape(rng: random.Random) -> tuple[Image.Image, str, str]:
    image = Image.new("RGB", (synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE), (235, 235, 235))
    color, shape = rng.choice(list(synthetic.COLORS)), rng.choice(synthetic.SHAPES)
    synthetic._draw_shape(ImageDraw.Draw(image), shape, (6, 6, 26, 26), synthetic.COLORS[color])
    return image, color, shape


def classify_example(rng: random.Random, index: int) -> Example:
    image, _, shape = _single_shape(rng)
    return Example(id=f"mini-classify-{index}", turns=[(f"<image>\n{CLASSIFY_QUESTION}\n{VQA_SUFFIX}", shape)],
                   image=image, meta={"answers": [shape]})


def choice_example(rng: random.Random, index: int) -> Example:
    image, objects = synthetic._scene(rng)
    side = rng.choice([s for s in ("left", "right") if s in objects])
    answer = objects[side][1]
    options = rng.sample(synthetic.SHAPES, len(LETTERS))
    lines = "\n".join(f"{letter}. {shape}" for letter, shape in zip(LETTERS, options))
    letter = LETTERS[options.index(answer)]
    question = f"<image>\n{CHOICE_QUESTION.format(side=side)}\n{lines}\n{CHOICE_SUFFIX}"
    return Example(id=f"mini-choice-{index}", turns=[(question, letter)], image=image, meta={"answers": [letter]})


def _captions(objects: dict) -> list[str]:
    """Five references in different words, as annotators write them."""
    parts = [f"{c} {s} {slot}" for slot, (c, s) in objects.items()]
    plain = [f"{c} {s}" for c, s in objects.values()]
    return [" and ".join(parts), "a " + " and a ".join(plain), " and ".join(plain), "the " + " and the ".join(parts),
            f"{NUMBER_WORDS[len(objects)]} shapes " + " and ".join(plain)]


def caption_example(rng: random.Random, index: int) -> Example:
    image, objects = synthetic._scene(rng)
    references = _captions(objects)
    return Example(id=f"mini-caption-{index}", turns=[(f"<image>\n{CAPTION_QUESTION}", rng.choice(references))],
                   image=image, meta={"answers": references})


def count_example(rng: random.Random, index: int) -> Example:
    image, objects = synthetic._scene(rng)
    color = rng.choice([c for c, _ in objects.values()] + [rng.choice(list(synthetic.COLORS))])
    left = NUMBER_WORDS[sum(1 for c, _ in objects.values() if c != color)]
    question = f"<image>\n{COUNT_QUESTION.format(color=color)}\n{VQA_SUFFIX}"
    return Example(id=f"mini-count-{index}", turns=[(question, left)], image=image, meta={"answers": [left]})


def vqa_example(rng: random.Random, index: int) -> Example:
    image, objects = synthetic._scene(rng)
    side = rng.choice([s for s in ("left", "right") if s in objects])
    color = objects[side][0]
    others = [c for c in synthetic.COLORS if c != color]
    agree = rng.randint(6, 10)  # ten annotators, most of whom agree
    answers = [color] * agree + [rng.choice(others) for _ in range(10 - agree)]
    rng.shuffle(answers)
    question = f"<image>\n{VQA_QUESTION.format(side=side)}\n{VQA_SUFFIX}"
    return Example(id=f"mini-vqa-{index}", turns=[(question, color)], image=image,
                   meta={"answers": [color], "vqa_answers": answers})


def grounding_example(rng: random.Random, index: int) -> Example:
    image, objects = synthetic._scene(rng)
    slot = rng.choice(list(objects))
    color, shape = objects[slot]
    box = box_text(slot)
    question = f"<image>\n{GROUNDING_QUESTION.format(color=color, shape=shape)}"
    return Example(id=f"mini-grounding-{index}", turns=[(question, box)], image=image, meta={"answers": [box]})


def presence_example(rng: random.Random, index: int) -> Example:
    image, objects = synthetic._scene(rng)
    color = rng.choice([c for c, _ in objects.values()] + [rng.choice(list(synthetic.COLORS))])
    answer = "Yes" if any(c == color for c, _ in objects.values()) else "No"
    question = f"<image>\n{PRESENCE_QUESTION.format(color=color)}"
    return Example(id=f"mini-presence-{index}", turns=[(question, answer)], image=image, meta={"answers": [answer]})


SEQUENCE_GENERATORS = {"mini-classify": classify_example, "mini-choice": choice_example,
                       "mini-caption": caption_example, "mini-count": count_example, "mini-vqa": vqa_example,
                       "mini-grounding": grounding_example, "mini-presence": presence_example}


def vocabulary() -> list[str]:
    """Every text the miniatures use, for the tiny LLaVA's tokenizer (appended after the synthetic tasks' words)."""
    texts = [VQA_SUFFIX, CHOICE_SUFFIX, CLASSIFY_QUESTION, CAPTION_QUESTION, COUNT_QUESTION, CHOICE_QUESTION,
             VQA_QUESTION, GROUNDING_QUESTION, PRESENCE_QUESTION, " ".join(LETTERS), " ".join(NUMBER_WORDS),
             "a the and shapes yes no", *(box_text(slot) for slot in SLOT_BOXES)]
    return [*texts, *synthetic.COLORS, *synthetic.SHAPES]


synthetic.GENERATORS.update(SEQUENCE_GENERATORS)
