"""Examples as a vision-language model's own chat: its processor's chat template, image tokens and pixels.

The conversation is rendered by the processor's chat template; the processor itself turns the text and the image
into `input_ids` (the image placeholder expanded into the family's image tokens: dynamic resolution, tiles,
`image_grid_thw`, ...) and pixel tensors, in one call per example. Labels come from the template too:

- where it marks the assistant's text (`{% generation %}`), the marked characters, as transformers'
  `return_assistant_tokens_mask` takes them;
- otherwise, per assistant turn, what rendering the conversation up to that answer adds to rendering it up to the
  question with the generation prompt (the prompt's tokens must be a prefix of the conversation's);

each answer up to and including the first stop token (the model's end of turn: generation_config.eos_token_id),
adding that token where the template leaves it outside the marked text. The labels are found on the text's own
tokens and moved past the image tokens (which come before every answer, in the first user turn): one processor
call per example, checked token by token against the processor's own output.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import Image
from transformers.utils.chat_template_utils import render_jinja_template

from llava_cit.data.image_batching import TOKEN_ALIGNED

IGNORE_INDEX = -100
GENERATION_MARK = re.compile(r"\{%-?\s*generation\s*-?%\}")


class VisionChat:
    """Encodes chat messages (and an image) with a vision-language processor."""

    def __init__(self, processor, stop_ids: list[int], name: str = "model"):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.template = processor.chat_template
        self.marked = bool(GENERATION_MARK.search(self.template))
        self.stop_ids = set(stop_ids)
        self.name = name
        self.image_ids = {i for i in getattr(processor, "image_token_ids", []) or [] if i is not None}

    def render(self, messages: list[dict], generation_prompt: bool, spans: bool = False):
        rendered, indices = render_jinja_template(
            conversations=[messages], chat_template=self.template, add_generation_prompt=generation_prompt,
            return_assistant_tokens_mask=spans, **self.tokenizer.special_tokens_map)
        return (rendered[0], indices[0] if indices else []) if spans else rendered[0]

    def _adds_special(self, text: str) -> bool:
        """transformers' rule: special tokens are added unless the rendered text starts with the BOS token."""
        bos = self.tokenizer.bos_token
        return not (bos and text.startswith(bos))

    def text_ids(self, text: str, offsets: bool = False):
        encoded = self.tokenizer(text, add_special_tokens=self._adds_special(text), return_offsets_mapping=offsets)
        return (encoded.input_ids, encoded.offset_mapping) if offsets else encoded.input_ids

    def process(self, text: str, image: Image.Image | None) -> dict[str, Any]:
        """The processor's own encoding of one rendered text and its image (None: a text-only conversation)."""
        return self.processor(text=[text], images=[image] if image is not None else None, return_tensors="pt",
                              add_special_tokens=self._adds_special(text))

    def encode(self, messages: list[dict], image: Image.Image | None, train: bool) -> dict[str, Any]:
        """input_ids (+ labels when `train`), the token-aligned inputs as lists and the image tensors (one example's,
        as the processor returns them)."""
        if train and self.marked:
            text, spans = self.render(messages, False, spans=True)
        elif train:
            text, spans = self.render(messages, False), []
        else:
            text, spans = self.render(messages, True), []
        processed = self.process(text, image)
        ids = processed["input_ids"][0].tolist()
        item: dict[str, Any] = {"input_ids": ids}
        for key, value in processed.items():
            if key in ("input_ids", "attention_mask"):
                continue
            item[key] = value[0].tolist() if key in TOKEN_ALIGNED else value
        if not train:
            return item
        text_ids, labels = self._labels(messages, text, spans)
        shift = len(ids) - len(labels)
        labelled = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        if not labelled:
            raise ValueError(f"{self.name}: the chat template renders no assistant answer")
        tail = len(labels) - labelled[0]
        if shift < 0 or ids[len(ids) - tail:] != text_ids[-tail:]:
            raise ValueError(f"{self.name}: its processor changes tokens after the image (the answers' tokens differ "
                             "from the rendered text's)")
        labels = [IGNORE_INDEX] * shift + labels
        end = shift + labelled[-1] + 1  # nothing after the last answer's end of turn
        item["input_ids"], item["labels"] = ids[:end], labels[:end]
        for key in TOKEN_ALIGNED:
            if key in item:
                item[key] = item[key][:end]
        return item

    def _labels(self, messages: list[dict], text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        """The rendered text's own tokens (image placeholders unexpanded) and their labels."""
        ids, offsets = self.text_ids(text, offsets=True)
        if not self.marked:
            spans = self._prompt_answer_spans(messages, text, ids)
        labels = [IGNORE_INDEX] * len(ids)
        for start, end in spans:
            inside = [i for i, (a, b) in enumerate(offsets) if a < end and start < b and b > a]
            if not inside:
                continue
            last = inside[-1]
            for i in inside:
                labels[i] = ids[i]
                if ids[i] in self.stop_ids:
                    last = i
                    break
            for i in inside:
                if i > last:
                    labels[i] = IGNORE_INDEX
            if ids[last] not in self.stop_ids and last + 1 < len(ids) and ids[last + 1] in self.stop_ids:
                labels[last + 1] = ids[last + 1]  # the end of turn the template writes after the marked text
        return ids, labels

    def _prompt_answer_spans(self, messages: list[dict], text: str, ids: list[int]) -> list[tuple[int, int]]:
        spans = []
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:k], True)
            upto = self.render(messages[: k + 1], False)
            prompt_ids = self.text_ids(prompt)
            if not (text.startswith(upto) and upto.startswith(prompt)) or ids[: len(prompt_ids)] != prompt_ids:
                raise ValueError(f"{self.name}: its chat template does not render a conversation as a growing "
                                 "prefix, and marks no {% generation %}: the answers cannot be told from the prompt")
            spans.append((len(prompt), len(upto)))
        return spans
