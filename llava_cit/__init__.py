"""llava-cit: continual instruction tuning of LLaVA and text models without forgetting (SwitchCIT)."""

from llava_cit.util import library_noise

library_noise.install()
