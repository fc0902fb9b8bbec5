"""seq-lora (the paper's "PEFT" baseline): one adapter trained on task after task."""

from llava_cit.methods.base import Method
from llava_cit.methods.registry import register

register(Method("seq-lora", continues=True,
                description="one adapter trained on task after task (forgets)",
                   paper="the PEFT baseline of SwitchCIT (arXiv 2407.11780); LoRA, Hu et al. 2021"))
