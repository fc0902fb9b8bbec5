"""seq-lora (the paper's "PEFT" baseline): one adapter trained on task after task."""

from llava_cit.methods.base import Method
from llava_cit.methods.registry import register

register(Method("seq-lora", continues=True, routes=False,
                description="one adapter trained on task after task (forgets)"))
