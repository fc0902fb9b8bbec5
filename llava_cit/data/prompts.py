"""Prompt formats: the LLaVA-1.5 conversation and the text track's instruction template.

The LLaVA-1.5 conversation (vicuna_v1, its system prompt, `<image>` expanded to a fixed number of tokens) is
LLaVA's own: every other image-text-to-text family is prompted through its processor's chat template
(llava_cit.data.chat_encoding). What makes a model "LLaVA-1.5" is decided here and only here.
"""

from __future__ import annotations

IMAGE_TOKEN = "<image>"  # where the image goes in the first question of a vision example
GQA_SUFFIX = "Answer the question using a single word or phrase."
TEXT_PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)


def with_image_token(question: str) -> str:
    """A vision example's first question as its reader stores it: the text as it is where it already places
    `<image>`, else `<image>` first on a line of its own (LLaVA's place for it)."""
    return question if IMAGE_TOKEN in question else f"{IMAGE_TOKEN}\n{question}"


def without_image_token(question: str) -> str:
    """The question as asked in words: `<image>` removed, surrounding whitespace stripped."""
    return question.replace(IMAGE_TOKEN, "").strip()


def llava_segments(turns: list[tuple[str, str]], system: str | None = None) -> list[tuple[str, str]]:
    """(prompt, answer) text pieces of a LLaVA-1.5 conversation.

    Renders `[system ]USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>`; the caller
    appends the end-of-sequence token after each answer (as a token, not a string).
    """
    segments = []
    for index, (question, answer) in enumerate(turns):
        head = f"{system} " if (system and index == 0) else ""
        segments.append((f"{head}USER: {question} ASSISTANT:", f" {answer}" if answer else ""))
    return segments


def text_prompt(instruction: str, input_text: str = "") -> str:
    """The text track's template: the general instruction preamble (SwitchCIT, after CT0), the
    instruction (for the CT0 tasks: the filled CT0 prompt, which already holds the task's text), then
    an `### Input:` block when the example has a separate input (e.g. the JSONL format's "input")."""
    head = f"{TEXT_PREAMBLE}\n\n### Instruction:\n{instruction}\n\n"
    if input_text:
        head += f"### Input:\n{input_text}\n\n"
    return head + "### Response:\n"


def text_segments(instruction: str, input_text: str, answer: str) -> list[tuple[str, str]]:
    return [(text_prompt(instruction, input_text), answer)]


# LLaVA-1.5's conversation template (llava/conversation.py `conv_vicuna_v1`, used by `llava_v1`)
LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the human's questions."
)
NAMED_SYSTEM_PROMPTS = {"vicuna_v1": LLAVA_SYSTEM, "none": None}


def speaks_llava_conversation(processor) -> bool:
    """A LLaVA-1.5 processor (a fixed number of `<image>` tokens per image): its model is prompted with LLaVA-1.5's
    conversation (unless asked for its chat template) and its images are padded to a square, as LLaVA-1.5 does."""
    from transformers import LlavaProcessor

    return isinstance(processor, LlavaProcessor)


