"""Turn examples into model tensors: label masking for training, padding for both directions.

Training batches pad on the right; generation batches pad on the left so every prompt
ends where generation starts. Only assistant answers (and their end-of-sequence token)
carry loss; every other position is labelled -100.

Prompt formats (`prompt_format: auto`): LLaVA-1.5's vicuna_v1 conversation for a LLaVA-1.5 processor
(llava_cit.data.prompts); for any other image-text-to-text model its processor's chat template, image tokens and
pixels (llava_cit.data.chat_encoding: Qwen-VL, InternVL, LLaVA-OneVision, SmolVLM/Idefics3, Gemma 3, ...); for a
text model whose tokenizer has a chat template (e.g. SmolLM2-Instruct), that template, rendered by the tokenizer
itself (each assistant turn's tokens are those the template adds after the generation prompt, up to its
end-of-turn token); otherwise the text track's instruction template (BLOOMZ, the tiny models).
`prompt_format: chat_template` makes a LLaVA use its processor's chat template (a LLaVA on a chat LM, e.g.
SmolLM2's ChatML), the image given as the first user turn's `{"type": "image"}` content; `builtin` keeps a text
model on the instruction template and a LLaVA on its conversation.

A training item holds `input_ids`, `labels`, the token-aligned inputs some families need (token types) and the
example's image tensors as its processor returns them; the collators batch them (llava_cit.data.image_batching).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from llava_cit.data.chat_encoding import VisionChat
from llava_cit.data.example import Example
from llava_cit.data.image_batching import TOKEN_ALIGNED, merge_image_inputs, pad_token_aligned
from llava_cit.data.image_preprocessing import prepare_image, resolve_aspect_ratio
from llava_cit.data.images import BadImage
from llava_cit.data.prompts import IMAGE_TOKEN, llava_segments, speaks_llava_conversation, text_segments
from llava_cit.models.loading import LoadedModel
from llava_cit.util.errors import UserError

IGNORE_INDEX = -100
PROMPT_FORMATS = ("auto", "chat_template", "builtin")


def num_image_tokens(processor) -> int:
    """How many `<image>` placeholders the processor expands one image into."""
    crop = getattr(processor.image_processor, "crop_size", None) or processor.image_processor.size
    height = crop.get("height") or crop.get("shortest_edge")
    width = crop.get("width") or crop.get("shortest_edge")
    count = (height // processor.patch_size) * (width // processor.patch_size)
    count += getattr(processor, "num_additional_image_tokens", 0) or 0
    if processor.vision_feature_select_strategy == "default":
        count -= 1
    return count


class Encoder:
    """Encodes examples for one loaded model (vision or text)."""

    def __init__(self, loaded: LoadedModel, max_length: int = 1024, system: str | None = None,
                 image_aspect_ratio: str = "auto", prompt_format: str = "auto"):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.max_length = max_length
        self.system = system
        if prompt_format not in PROMPT_FORMATS:
            raise UserError(f"unknown prompt format '{prompt_format}' (known: {', '.join(PROMPT_FORMATS)})")
        llava = loaded.is_vision and speaks_llava_conversation(loaded.processor)
        self.image_aspect_ratio = resolve_aspect_ratio(image_aspect_ratio, llava_processor=llava)
        probe = self.tokenizer("a").input_ids
        bos = self.tokenizer.bos_token_id
        self.prefix = [bos] if (bos is not None and probe and probe[0] == bos) else []
        owner = loaded.processor if loaded.is_vision else self.tokenizer  # who renders the chat template
        template = getattr(owner, "chat_template", None)
        if prompt_format == "chat_template" and not template:
            raise UserError(f"prompt_format 'chat_template': model '{loaded.spec}' has no chat template")
        if loaded.is_vision and not llava and prompt_format != "chat_template" and not template:
            raise UserError(f"model '{loaded.spec}': its processor ({type(loaded.processor).__name__}) has no chat "
                            "template, and LLaVA-1.5's conversation needs a LLaVA processor")
        if loaded.is_vision and not llava and prompt_format == "builtin":
            raise UserError(f"prompt_format 'builtin' (LLaVA-1.5's conversation) needs a LLaVA processor; model "
                            f"'{loaded.spec}' ({type(loaded.processor).__name__}) prompts through its chat template")
        self.chat = bool(template) and (prompt_format == "chat_template"
                                        or (prompt_format == "auto" and not (loaded.is_vision and llava)))
        self.image_expansion = IMAGE_TOKEN * num_image_tokens(loaded.processor) if (llava and not self.chat) else None
        self.vision_chat = VisionChat(loaded.processor, self.stop_token_ids, loaded.spec) \
            if (loaded.is_vision and self.chat) else None

    @property
    def stop_token_ids(self) -> list[int]:
        """Where an answer ends: the model's generation_config.eos_token_id (one or several: e.g. Gemma 3's
        <end_of_turn>) and the tokenizer's end-of-sequence token."""
        configured = getattr(getattr(self.loaded.model, "generation_config", None), "eos_token_id", None)
        configured = configured if isinstance(configured, list) else [configured]
        return list(dict.fromkeys(t for t in [*configured, self.tokenizer.eos_token_id] if t is not None))

    def messages(self, example: Example, with_answer: bool = True) -> list[dict]:
        """The example as chat messages (models prompted through their chat template). A vision example's first
        user turn carries its image as `{"type": "image"}` content, in transformers' multimodal message format."""
        vision = self.loaded.is_vision

        def content(text: str, image: bool = False):  # a vision model's messages are lists of typed parts
            return ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}] if vision else text

        messages = [{"role": "system", "content": content(self.system)}] if self.system else []
        for index, (question, answer) in enumerate(example.turns):
            user = f"{question}\n\n{example.input}" if (index == 0 and example.input) else question
            question_text = user.replace(IMAGE_TOKEN, "").strip() if vision else user
            messages.append({"role": "user", "content": content(question_text, index == 0 and example.has_image)})
            if with_answer or index < len(example.turns) - 1:
                messages.append({"role": "assistant", "content": content(answer)})
        return messages

    def _template_ids(self, messages: list[dict], generation_prompt: bool) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def _encode_chat(self, example: Example) -> tuple[list[int], list[int]]:
        """input_ids and labels from the tokenizer's own chat template: each assistant turn is labelled from the
        end of its generation prompt up to and including the end-of-turn (eos) token."""
        messages = self.messages(example)
        eos = self.tokenizer.eos_token_id
        input_ids: list[int] = []
        labels: list[int] = []
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self._template_ids(messages[:k], generation_prompt=True)
            full = self._template_ids(messages[: k + 1], generation_prompt=False)
            if prompt[: len(input_ids)] != input_ids or full[: len(prompt)] != prompt:
                raise ValueError("the tokenizer's chat template does not render a conversation as a growing prefix")
            answer = full[len(prompt):]
            if eos in answer:
                answer = answer[: answer.index(eos) + 1]
            labels += [IGNORE_INDEX] * (len(prompt) - len(input_ids)) + answer
            input_ids = prompt + answer
        return input_ids, labels

    @property
    def max_positions(self) -> int | None:
        """How many positions the language model can attend to (None: no fixed limit, e.g. BLOOM's ALiBi)."""
        config = self.loaded.model.config
        config = getattr(config, "text_config", None) or config
        return getattr(config, "max_position_embeddings", None)

    def segments(self, example: Example, with_answer: bool = True) -> list[tuple[str, str]]:
        if self.loaded.is_vision:
            turns = list(example.turns)
            if example.has_image and IMAGE_TOKEN not in turns[0][0]:
                turns[0] = (f"{IMAGE_TOKEN}\n{turns[0][0]}", turns[0][1])
            if not with_answer:
                turns[-1] = (turns[-1][0], "")
            return llava_segments(turns, self.system)
        answer = example.answer if with_answer else ""
        return text_segments(example.instruction, example.input, answer)

    def _ids(self, text: str) -> list[int]:
        if self.image_expansion:
            text = text.replace(IMAGE_TOKEN, self.image_expansion)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _image(self, example: Example):
        if not example.has_image:
            return None
        return prepare_image(example.load_image(), self.image_aspect_ratio, self.loaded.processor.image_processor)

    def _vision_item(self, example: Example, train: bool, pixels: bool = True) -> dict[str, Any]:
        item = self.vision_chat.encode(self.messages(example, with_answer=train), self._image(example), train)
        if not pixels:
            item = {k: v for k, v in item.items() if not torch.is_tensor(v)}
        return item

    def _truncate(self, item: dict[str, Any], example: Example) -> dict[str, Any]:
        """At most max_length tokens; an image's tokens are never cut (the model needs all of them)."""
        cut = item["input_ids"][self.max_length:]
        image_ids = self.vision_chat.image_ids if self.vision_chat is not None else set()
        if cut and image_ids and any(t in image_ids for t in cut):
            raise UserError(f"example '{example.id}': train.max_length={self.max_length} cuts its image tokens "
                            f"({len(item['input_ids'])} tokens with the image): raise train.max_length or give the "
                            "processor a smaller image size")
        for key in ("input_ids", "labels", *TOKEN_ALIGNED):
            if key in item:
                item[key] = item[key][: self.max_length]
        return item

    def encode_train(self, example: Example, pixels: bool = True) -> dict[str, Any]:
        if self.vision_chat is not None:
            return self._truncate(self._vision_item(example, train=True, pixels=pixels), example)
        if self.chat:
            input_ids, labels = self._encode_chat(example)
            return {"input_ids": input_ids[: self.max_length], "labels": labels[: self.max_length]}
        input_ids, labels = list(self.prefix), [IGNORE_INDEX] * len(self.prefix)
        eos = self.tokenizer.eos_token_id
        for prompt, answer in self.segments(example):
            prompt_ids = self._ids(prompt)
            answer_ids = self._ids(answer) + [eos]
            input_ids += prompt_ids + answer_ids
            labels += [IGNORE_INDEX] * len(prompt_ids) + answer_ids
        input_ids, labels = input_ids[: self.max_length], labels[: self.max_length]
        item = {"input_ids": input_ids, "labels": labels}
        if self.loaded.is_vision and pixels and example.has_image:  # a text-only conversation has no image slot
            item["pixel_values"] = self.pixels([example])
        return item

    def prompt_text(self, example: Example) -> str:
        """The prompt as text (before image-token expansion): what training, evaluation and serving all build."""
        if self.vision_chat is not None:
            return self.vision_chat.render(self.messages(example, with_answer=False), True)
        if self.chat:
            return self.tokenizer.apply_chat_template(self.messages(example, with_answer=False), tokenize=False,
                                                      add_generation_prompt=True)
        segments = self.segments(example, with_answer=False)
        eos = self.tokenizer.eos_token or ""
        return "".join(p + a + eos for p, a in segments[:-1]) + segments[-1][0]

    def encode_prompt(self, example: Example) -> list[int]:
        """Everything up to (and including) the last `ASSISTANT:`; the answer is left to generate. A vision chat's
        image is expanded as the processor expands it (an image that cannot be opened: its placeholder alone)."""
        if self.vision_chat is not None:
            try:
                return self._vision_item(example, train=False, pixels=False)["input_ids"]
            except BadImage:
                return self.vision_chat.text_ids(self.prompt_text(example))
        if self.chat:
            return self._template_ids(self.messages(example, with_answer=False), generation_prompt=True)
        ids = list(self.prefix)
        segments = self.segments(example, with_answer=False)
        eos = self.tokenizer.eos_token_id
        for prompt, answer in segments[:-1]:
            ids += self._ids(prompt) + self._ids(answer) + [eos]
        return ids + self._ids(segments[-1][0])

    def pixels(self, examples: list[Example]) -> torch.Tensor:
        """Pixel values of the examples' images, in order (each example must have one)."""
        images = [prepare_image(ex.load_image(), self.image_aspect_ratio, self.loaded.processor.image_processor)
                  for ex in examples]
        return self.loaded.processor.image_processor(images, return_tensors="pt")["pixel_values"]

    def generation_batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Left-padded prompts (and pixel values) for batched greedy generation."""
        if self.vision_chat is not None:
            return GenerationCollator(self.tokenizer.pad_token_id)(
                [self._vision_item(ex, train=False) for ex in examples])
        prompts = [self.encode_prompt(ex) for ex in examples]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention}
        with_image = [ex for ex in examples if ex.has_image]
        if self.loaded.is_vision and with_image:  # one image per image slot, in order: text-only rows have none
            batch["pixel_values"] = self.pixels(with_image)
        return batch


@dataclass
class TrainCollator:
    """Right-pads encoded training items into a batch (token-aligned inputs alike); image tensors follow one another
    (a text-only conversation has none: the model pairs images with image slots in order)."""

    pad_token_id: int
    left: bool = False

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            span = slice(width - n, width) if self.left else slice(0, n)
            input_ids[row, span] = torch.tensor(item["input_ids"])
            if "labels" in item:
                labels[row, span] = torch.tensor(item["labels"])
            attention[row, span] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention}
        if any("labels" in item for item in items):
            batch["labels"] = labels
        for key in TOKEN_ALIGNED:
            if any(key in item for item in items):
                batch[key] = pad_token_aligned([item.get(key, [0] * len(item["input_ids"])) for item in items],
                                               width, self.left)
        images = merge_image_inputs([{k: v for k, v in item.items() if torch.is_tensor(v)} for item in items])
        return {**batch, **images}


class GenerationCollator(TrainCollator):
    """Left-pads prompts (every prompt ends where generation starts)."""

    def __init__(self, pad_token_id: int):
        super().__init__(pad_token_id, left=True)
