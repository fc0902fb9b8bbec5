"""The CT0 prompts (Scialom, Chakrabarty & Muresan 2022, "Fine-tuned Language Models are
Continual Learners"), as published in their code (ThomasScialom/T0_continual_learning,
`t0_continual_learning/configs/*.json`, prompt names in brackets), and the helpers that fill them.

`[field]` placeholders are replaced by a record's fields, as CT0's `applyCustom` does; one prompt of
a family is drawn per example. The filled prompt is the example's instruction; the text track wraps
it in the general instruction preamble (`llava_cit.data.prompts.text_prompt`).
"""

from __future__ import annotations

import random
import re

from benchmarks.text_metrics import constraint_met  # noqa: F401  (CT0's check, with the other metrics)

# Simp, wiki_auto / ASSET [simplification_1]; the field is `normal_sentence` (wiki_auto) or `original` (ASSET):
# both are mapped to [source] here.
SIMPLIFICATION = [
    "[source]\n\n===\n\nGiven the above text, write it with, simpler words:",
    "[source]\n\n===\n\nGiven this text, write it with, simpler words:",
    "[source]\n\n===\n\nGiven the above text, rewrite it so it is easier to understand:",
    "[source]\n\n===\n\nGiven the above text, rewrite it so it is easier to read:",
    "[source]\n\n===\n\nGiven the above text, reformulate it so it is easier to read:",
    "[source]\n\n===\n\nGiven the above text, reformulate it with simpler words:",
    'Make this text simpler: "[source]"',
    'Reformulate this text with simpler words: "[source]"',
    'Reformulate the following text with simpler words: "[source]"',
    'Rewrite this text so it becomes easier to understand: "[source]"',
    'Generate a text easier to understand, with similar content than this text: "[source]"',
]

# Emdg, empathetic_dialogues [dialogue_with_emotion]
DIALOGUE_WITH_EMOTION = [
    'The associated emotion is "[context_emotion]" and the input prompt is "[context_prompt]". '
    "Now what would be your response, given the following dialogue context:\n\n===\n\n[input_text]",
]

# InqQG, ELI5 text -> question [generate_a_question_1] (CT0's spelling kept)
GENERATE_A_QUESTION = [
    'Given the following text, what could have been an inquisive question: "[text]"',
    'Given the following text, write the possible curious question it answers: "[text]"',
    'Write an inquisive question about the following text: "[text]"',
    "[text]\n\n===\n\nGiven the above text, write the possible curious question it answers:",
]

# Exp, e-SNLI [explain_why]; CT0's wording for each gold label
EXPLAIN_WHY = [
    'Explain why the two following sentences [gold_label_prompt]: "Sentence 1: [Sentence1]"; '
    'Sentence 2: "[Sentence2]"',
]
ESNLI_LABEL_PROMPTS = {
    "entailment": "entail each other",
    "contradiction": "do not entail each other",
    "neutral": "are unrelated",
}

# HGen, gigaword [constrain_{start,contain,end}+make_a_title]; CT0's spelling kept
MAKE_A_TITLE = {
    "start": [
        'Make a title for this article, starting with "[TO_REPLACE_1]": [document]',
        'Make a title for this article that starts with "[TO_REPLACE_1]": [document]',
        'Make a title for this article, begining with "[TO_REPLACE_1]": [document]',
        'Make a title for this article that begins with "[TO_REPLACE_1]": [document]',
        'Make a title for this article which begins with "[TO_REPLACE_1]": [document]',
    ],
    "contain": [
        'Make a title for this article, containing "[TO_REPLACE_1]": [document]',
        'Make a title for this article that contains "[TO_REPLACE_1]": [document]',
        'Make a title for this article, mentioning "[TO_REPLACE_1]": [document]',
        'Make a title for this article that mentions "[TO_REPLACE_1]": [document]',
        'Make a title for this article, including "[TO_REPLACE_1]": [document]',
        'Make a title for this article that includes "[TO_REPLACE_1]": [document]',
        'Make a title for this article which includes "[TO_REPLACE_1]": [document]',
        'Make a title for this article with "[TO_REPLACE_1]": [document]',
    ],
    "end": [
        'Make a title for this article, ending with "[TO_REPLACE_1]": [document]',
        'Make a title for this article,by ending with "[TO_REPLACE_1]": [document]',
        'Make a title for this article that ends with "[TO_REPLACE_1]": [document]',
        'Make a title for this article, finishing with "[TO_REPLACE_1]": [document]',
        'Make a title for this article that finishes with "[TO_REPLACE_1]": [document]',
        'Make a title for this article which ends with "[TO_REPLACE_1]": [document]',
    ],
}
CONSTRAINT_TYPES = tuple(MAKE_A_TITLE)

_PLACEHOLDER = re.compile(r"\[([A-Za-z0-9_]+)\]")


def fill(template: str, fields: dict[str, str]) -> str:
    """Replace every `[name]` placeholder of a CT0 template by `fields[name]` (all must be given)."""
    missing = sorted({name for name in _PLACEHOLDER.findall(template) if name not in fields})
    if missing:
        raise KeyError(f"the prompt needs field(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: fields[m.group(1)], template)  # one pass: values are never re-scanned


def choose(templates: list[str], rng: random.Random) -> str:
    """One prompt of a family, as CT0 draws it (`random.choice` per example)."""
    return rng.choice(templates)


def constraint_word(title: str, kind: str, rng: random.Random) -> str:
    """CT0's keyword for a headline constraint: the first word (start), a random word (contain), the last (end)."""
    words = title.split()
    if not words:
        raise ValueError("an empty title has no keyword")
    if kind == "start":
        return words[0]
    if kind == "end":
        return words[-1]
    if kind == "contain":
        return words[rng.randint(0, len(words) - 1)]
    raise ValueError(f"unknown constraint type '{kind}' (known: {', '.join(CONSTRAINT_TYPES)})")


def all_prompt_texts() -> list[str]:
    """Every CT0 prompt string (for building the tiny word tokenizer's vocabulary)."""
    texts = SIMPLIFICATION + DIALOGUE_WITH_EMOTION + GENERATE_A_QUESTION + EXPLAIN_WHY
    texts += [t for family in MAKE_A_TITLE.values() for t in family] + list(ESNLI_LABEL_PROMPTS.values())
    return [_PLACEHOLDER.sub(" ", t) for t in texts]
