"""The five CT0 text datasets, read from Hugging Face (or any rows with the same fields) into
examples carrying the CT0 prompts, as Scialom et al. 2022 prepared them:

| reader                 | fields read                                              | target           |
|------------------------|----------------------------------------------------------|------------------|
| `wiki_auto`            | normal_sentence, simple_sentence                         | simple sentence  |
| `asset`                | original, simplifications (10 references)                | all references   |
| `empathetic_dialogues` | conv_id, utterance_idx, speaker_idx, context, prompt, utterance | next turn  |
| `eli5`                 | title, answers{text, score}                              | the question     |
| `esnli`                | premise, hypothesis, label, explanation_1..3             | the explanations |
| `gigaword`             | document, summary                                        | the headline     |

Dialogues are cut CT0's way: one example per turn after the first, the earlier turns as a
`- `-bulleted context. ELI5 keeps CT0's filter (titles starting with W or H holding exactly one
`?`) and the best-scored answer as the text; e-SNLI maps the label to CT0's wording; gigaword
cycles the start/contain/end keyword constraint over the examples (CT0 trains on a third of each).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

from llava_cit.data.example import Example
from llava_cit.tasks import ct0_prompts
from llava_cit.util.errors import UserError

ESNLI_LABELS = ("entailment", "neutral", "contradiction")  # the HF ClassLabel order


def _field(row: dict, name: str, reader: str, index: int):
    if name not in row:
        raise UserError(f"{reader} row {index}: missing field '{name}' (has: {', '.join(sorted(row))})")
    return row[name]


def _example(reader: str, index: int, template: str, fields: dict[str, str], answers: list[str], **meta) -> Example:
    return Example(id=f"{reader}-{index}", turns=[(ct0_prompts.fill(template, fields), answers[0])],
                   meta={"answers": answers, **meta})


def wiki_auto(rows: Iterable[dict], rng: random.Random) -> Iterator[Example]:
    for index, row in enumerate(rows):
        source, simple = _field(row, "normal_sentence", "wiki_auto", index), _field(row, "simple_sentence", "wiki_auto",
                                                                                   index)
        if source and simple:
            template = ct0_prompts.choose(ct0_prompts.SIMPLIFICATION, rng)
            yield _example("wiki_auto", index, template, {"source": source}, [simple], source=source)


def asset(rows: Iterable[dict], rng: random.Random) -> Iterator[Example]:
    for index, row in enumerate(rows):
        source, refs = _field(row, "original", "asset", index), list(_field(row, "simplifications", "asset", index))
        if source and refs:
            template = ct0_prompts.choose(ct0_prompts.SIMPLIFICATION, rng)
            yield _example("asset", index, template, {"source": source}, refs, source=source)


def _dialogues(rows: Iterable[dict]) -> Iterator[dict[str, Any]]:
    """Conversations as CT0 rebuilds them: turns in order, speakers alternating, `_comma_` restored."""
    current, last_idx, last_speaker = None, None, None
    for index, row in enumerate(rows):
        conv = _field(row, "conv_id", "empathetic_dialogues", index)
        utterance_idx, speaker = int(row["utterance_idx"]), row["speaker_idx"]
        if current is None or current["conv_id"] != conv:
            if current is not None:
                yield current
            current = None
            if utterance_idx != 1:
                continue
            current = {"conv_id": conv, "emotion": row["context"], "prompt": row["prompt"],
                       "turns": [row["utterance"]]}
            last_idx, last_speaker = utterance_idx, speaker
            continue
        if speaker == last_speaker or utterance_idx != last_idx + 1:
            continue  # CT0 drops turns that break the alternation
        last_idx, last_speaker = utterance_idx, speaker
        current["turns"].append(row["utterance"])
    if current is not None:
        yield current


def empathetic_dialogues(rows: Iterable[dict], rng: random.Random) -> Iterator[Example]:
    number = 0
    for conv in _dialogues(rows):
        turns = [t.replace("_comma_", ",") for t in conv["turns"]]
        for i in range(1, len(turns)):
            fields = {"context_emotion": conv["emotion"], "context_prompt": conv["prompt"].replace("_comma_", ","),
                      "input_text": "\n".join(f"- {t}" for t in turns[:i])}
            template = ct0_prompts.choose(ct0_prompts.DIALOGUE_WITH_EMOTION, rng)
            yield _example("empathetic_dialogues", number, template, fields, [turns[i]],
                           conv_id=conv["conv_id"], turn=i)
            number += 1


def eli5(rows: Iterable[dict], rng: random.Random) -> Iterator[Example]:
    for index, row in enumerate(rows):
        question, answers = _field(row, "title", "eli5", index), _field(row, "answers", "eli5", index)
        if not question or question[0] not in "WH" or question.count("?") != 1:
            continue
        scores, texts = answers["score"], answers["text"]
        if not texts:
            continue
        text = texts[scores.index(max(scores))]
        template = ct0_prompts.choose(ct0_prompts.GENERATE_A_QUESTION, rng)
        yield _example("eli5", index, template, {"text": text}, [question])


def esnli(rows: Iterable[dict], rng: random.Random) -> Iterator[Example]:
    for index, row in enumerate(rows):
        label = _field(row, "label", "esnli", index)
        if isinstance(label, int):
            if label not in range(len(ESNLI_LABELS)):
                continue  # -1: no gold label
            label = ESNLI_LABELS[label]
        if label not in ct0_prompts.ESNLI_LABEL_PROMPTS:
            continue
        explanations = [row.get(f"explanation_{k}") for k in (1, 2, 3)]
        explanations = [e for e in explanations if e]
        if not explanations:
            continue
        fields = {"gold_label_prompt": ct0_prompts.ESNLI_LABEL_PROMPTS[label],
                  "Sentence1": _field(row, "premise", "esnli", index), "Sentence2": _field(row, "hypothesis", "esnli",
                                                                                           index)}
        template = ct0_prompts.choose(ct0_prompts.EXPLAIN_WHY, rng)
        yield _example("esnli", index, template, fields, explanations, label=label)


def gigaword(rows: Iterable[dict], rng: random.Random) -> Iterator[Example]:
    number = 0
    for index, row in enumerate(rows):
        document, title = _field(row, "document", "gigaword", index), _field(row, "summary", "gigaword", index)
        if not document or not title.split():
            continue
        kind = ct0_prompts.CONSTRAINT_TYPES[number % len(ct0_prompts.CONSTRAINT_TYPES)]
        word = ct0_prompts.constraint_word(title, kind, rng)
        template = ct0_prompts.choose(ct0_prompts.MAKE_A_TITLE[kind], rng)
        yield _example("gigaword", index, template, {"TO_REPLACE_1": word, "document": document}, [title],
                       constraint={"type": kind, "word": word})
        number += 1


READERS = {"wiki_auto": wiki_auto, "asset": asset, "empathetic_dialogues": empathetic_dialogues, "eli5": eli5,
           "esnli": esnli, "gigaword": gigaword}


def read_ct0(reader: str, rows: Iterable[dict], limit: int | None = None, seed: int = 0, split: str = "train"
             ) -> list[Example]:
    """At most `limit` examples of `reader` from `rows`; the prompt drawn per example is seeded."""
    if reader not in READERS:
        raise UserError(f"unknown CT0 dataset reader '{reader}' (known: {', '.join(READERS)})")
    rng = random.Random(f"ct0:{reader}:{split}:{seed}")
    examples = []
    for example in READERS[reader](rows, rng):
        if limit is not None and len(examples) >= limit:
            break
        examples.append(example)
    return examples
