"""Small generated text tasks for the offline text track (tiny BLOOM on a CPU).

Every example starts from one short generated "article" (`the big red dog sleeps near the park .`)
and asks for a different, checkable output with a CT0 prompt family, so the tasks share their
inputs but not their answers (the situation in which one adapter tuned task after task forgets):

* `synth-simp`  (Simp in miniature): drop the size word and the place -> `the red dog sleeps .`; SARI.
* `synth-inqqg` (InqQG): the question the article answers -> `what does the red dog do ?`; ROUGE-1.
* `synth-hgen`  (HGen): a headline that starts with / contains / ends with a keyword ->
  `red dog sleeps near park`; ROUGE-1 and the constraint rate.
* `synth-text-base`: copy a text (`Repeat the text: "..."`): the tiny base's generic pre-training.
"""

from __future__ import annotations

import random

from llava_cit.data.example import Example
from llava_cit.tasks import ct0_prompts

SIZES = ["big", "small", "tall", "little"]
COLORS = ["red", "blue", "green", "yellow", "black", "white"]
ANIMALS = ["dog", "cat", "bird", "horse", "fox", "bear", "duck", "goat"]
ACTIONS = ["sleeps", "runs", "sits", "eats", "waits", "plays"]
PLACES = ["park", "river", "house", "tree", "road", "hill", "lake", "farm"]
REPEAT_PROMPT = 'Repeat the text: "[text]"'


def _fact(rng: random.Random) -> dict[str, str]:
    return {"size": rng.choice(SIZES), "color": rng.choice(COLORS), "animal": rng.choice(ANIMALS),
            "action": rng.choice(ACTIONS), "place": rng.choice(PLACES)}


def article(f: dict[str, str]) -> str:
    return f"the {f['size']} {f['color']} {f['animal']} {f['action']} near the {f['place']} ."


def simp_example(rng: random.Random, index: int) -> Example:
    f = _fact(rng)
    source = article(f)
    instruction = ct0_prompts.fill(ct0_prompts.choose(ct0_prompts.SIMPLIFICATION, rng), {"source": source})
    target = f"the {f['color']} {f['animal']} {f['action']} ."
    return Example(id=f"synth-simp-{index}", turns=[(instruction, target)], meta={"source": source})


def inqqg_example(rng: random.Random, index: int) -> Example:
    f = _fact(rng)
    instruction = ct0_prompts.fill(ct0_prompts.choose(ct0_prompts.GENERATE_A_QUESTION, rng), {"text": article(f)})
    return Example(id=f"synth-inqqg-{index}", turns=[(instruction, f"what does the {f['color']} {f['animal']} do ?")])


def hgen_example(rng: random.Random, index: int) -> Example:
    f = _fact(rng)
    title = f"{f['color']} {f['animal']} {f['action']} near {f['place']}"
    kind = ct0_prompts.CONSTRAINT_TYPES[index % len(ct0_prompts.CONSTRAINT_TYPES)]
    word = ct0_prompts.constraint_word(title, kind, rng)
    instruction = ct0_prompts.fill(ct0_prompts.choose(ct0_prompts.MAKE_A_TITLE[kind], rng),
                                   {"TO_REPLACE_1": word, "document": article(f)})
    return Example(id=f"synth-hgen-{index}", turns=[(instruction, title)],
                   meta={"constraint": {"type": kind, "word": word}})


def text_base_example(rng: random.Random, index: int) -> Example:
    """Copy an article, or a shuffled one (so copying, not the grammar, is what is learned)."""
    words = article(_fact(rng)).split()
    if rng.random() < 0.5:
        pool = SIZES + COLORS + ANIMALS + ACTIONS + PLACES + ["the", "near", "."]
        words = [rng.choice(pool) for _ in range(rng.randint(3, 9))]
    text = " ".join(words)
    return Example(id=f"synth-text-base-{index}", turns=[(ct0_prompts.fill(REPEAT_PROMPT, {"text": text}), text)])


TEXT_GENERATORS = {"synth-simp": simp_example, "synth-inqqg": inqqg_example, "synth-hgen": hgen_example,
                   "synth-text-base": text_base_example}


def vocabulary() -> list[str]:
    """Every text the generated text tasks and the CT0 prompts use (for the tiny word tokenizer)."""
    texts = ct0_prompts.all_prompt_texts() + [REPEAT_PROMPT.replace("[text]", " "), "the near what does do ?"]
    return texts + SIZES + COLORS + ANIMALS + ACTIONS + PLACES
