"""full-sft: every weight of the model fine-tuned on task after task, no LoRA (a text-track baseline).

Each stage's whole model is saved (safetensors, with its tokenizer) under `models/`; the next stage
continues from it. Costly at 7B (optimizer states for every weight): use DeepSpeed/FSDP via accelerate.
"""

from llava_cit.methods.base import Method
from llava_cit.methods.registry import register

register(Method("full-sft", continues=True, full_finetune=True,
                description="full fine-tuning of all weights, task after task (no LoRA; forgets)",
                   paper="full fine-tuning baseline of SwitchCIT's text track (arXiv 2407.11780)"))
