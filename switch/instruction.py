"""What the switch reads: the instruction (plus optional text input), never the image.

One function, used at training and at routing time, so both see the same text.
"""

from __future__ import annotations

import re

from switch.errors import SwitchError

IMAGE_TOKEN = "<image>"
SYSTEM_PROMPTS = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the human's questions.",
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions.",
)
ANSWER_FORMAT_SUFFIXES = (
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "Answer the question with a single word.",
)
_ROLE = re.compile(r"^\s*(USER|ASSISTANT|Human|Assistant)\s*:\s*", re.IGNORECASE)


def switch_text(instruction: str, input_text: str = "") -> str:
    """The instruction as the switch sees it: no `<image>`, system prompt, role tag or format suffix."""
    text = instruction or ""
    for system in SYSTEM_PROMPTS:
        text = text.replace(system, " ")
    text = text.replace(IMAGE_TOKEN, " ")
    text = _ROLE.sub("", text)
    for suffix in ANSWER_FORMAT_SUFFIXES:
        text = text.replace(suffix, " ")
    text = " ".join(text.split())
    if input_text and input_text.strip():
        text = f"{text}\n{' '.join(input_text.split())}" if text else " ".join(input_text.split())
    if not text:
        raise SwitchError("empty instruction: nothing left for the switch to read")
    return text
