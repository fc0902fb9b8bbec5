"""SwitchCIT: a new LoRA adapter per task on the frozen base; a switch routes each query."""

from llava_cit.methods.base import Method
from llava_cit.methods.registry import register

register(Method("switchcit", routes=True,
                description="one adapter per task + a switch network routing each query to its task's adapter",
                   paper="SwitchCIT, arXiv 2407.11780"))
