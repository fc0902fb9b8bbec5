"""switchcit-nn: SwitchCIT's adapters, routed without a trained classifier: each query goes to the task of its
nearest retained instruction in the switch extractor's (standardised) feature space, as DISCO-style methods
route. The comparison with `switchcit` shows what the MLP switch adds."""

from llava_cit.methods.base import Method
from llava_cit.methods.registry import register

register(Method("switchcit-nn", routes=True, router="nearest",
                description="one adapter per task, routed to the task of the nearest retained instruction",
                paper="nearest-neighbour routing baseline (DISCO-style); adapters as SwitchCIT, arXiv 2407.11780"))
