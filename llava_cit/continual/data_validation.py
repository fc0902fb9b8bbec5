"""Check every stage's data before stage 0 trains: one error listing every problem found.

Each source is opened and parsed (files exist, records have their fields, sample keys are unique, image
paths stay under their root); every image's header is read (cheap: the pixels are not decoded), so an
unreadable image, a non-image or a decompression bomb is found before stage 0 trains, not mid-stage. With a
built-in tiny model, every word of every example must be in its word vocabulary: an unknown word would silently
become `<unk>` and the task could never be answered.
"""

from __future__ import annotations

from llava_cit.data.example import Example
from llava_cit.data.images import BadImage, check_image_header
from llava_cit.data.sources import load_source
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError

SHOWN = 5  # unreadable images listed per source (then a count)


def check_images(examples: list[Example]) -> list[str]:
    """The images that cannot be read (missing, not an image, over Pillow's pixel limit): the first few, then a count."""
    problems, checked = [], set()
    for example in examples:
        if example.image_path is None or example.meta.get("error") or example.image_path in checked:
            continue
        checked.add(example.image_path)
        try:
            check_image_header(example.image_path)
        except BadImage as err:
            problems.append(f"sample '{example.id}': {err}")
    if len(problems) > SHOWN:
        problems = problems[:SHOWN] + [f"and {len(problems) - SHOWN} more unreadable image(s)"]
    return problems


def unknown_words(tokenizer, examples: list[Example]) -> dict[str, str]:
    """Words a word-level tokenizer maps to its unknown token (word -> the example id where it is first seen)."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return {}
    vocab = tokenizer.get_vocab()
    from switch.tiny import SPECIAL_TOKENS, words_of

    pre_tokenizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)

    def pieces(texts: list[str]) -> list[str]:
        """The tokenizer's own split of the texts (a tiny spec may split decimals whole), specials left out."""
        if pre_tokenizer is None:
            return words_of(texts)
        out = []
        for text in texts:
            for special in SPECIAL_TOKENS:
                text = text.replace(special, " ")
            out += [piece for piece, _ in pre_tokenizer.pre_tokenize_str(text.lower())]
        return out

    found: dict[str, str] = {}
    for example in examples:
        texts = [text for turn in example.turns for text in turn] + [example.input]
        for word in pieces(texts):
            if word not in vocab and word not in found:
                found[word] = example.id
    return found


def validate_data(tasks: list[TaskSpec], config, tokenizer=None, load=load_source) -> dict[str, int]:
    """Open every task's train and test source; raise one UserError listing all problems. Returns counts."""
    problems: list[str] = []
    counts: dict[str, int] = {}
    for task in tasks:
        for split, source, limit in (("train", task.train, config.train_limit), ("test", task.test, config.eval.limit)):
            try:
                examples = load(source, task.name, split, limit, config.seed, task.suffix)
            except UserError as err:
                problems.append(f"task '{task.name}' ({split}): {err}")
                continue
            counts[f"{task.name}/{split}"] = len(examples)
            problems += [f"task '{task.name}' ({split}): {p}" for p in check_images(examples)]
            if tokenizer is not None:
                unknown = unknown_words(tokenizer, examples)
                if unknown:
                    shown = ", ".join(f"'{w}' (example {i})" for w, i in list(unknown.items())[:5])
                    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                    problems.append(f"task '{task.name}' ({split}): words outside the tiny model's vocabulary would "
                                    f"become <unk>: {shown}{more} (`llava-cit vocab {config.model}` lists its words)")
    if problems:
        raise UserError(f"{len(problems)} data problem(s) found before training:\n  - " + "\n  - ".join(problems))
    return counts
