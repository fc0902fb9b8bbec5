"""The processor of an image-text-to-text model, for image work, with or without torchvision.

transformers builds a family's processor from all its parts; for families that also take videos (Qwen2-VL,
Qwen2.5-VL, InternVL, LLaVA-OneVision, SmolVLM) one part is a video processor, which needs torchvision even when
only images are used. Where torchvision is missing, the toolkit builds the same processor class without its video
part (`image_only`): the tokenizer, the family's image processor (its PIL variant: transformers picks it when
torchvision is missing) and the chat template, as saved with the model. Images work the same; videos need
torchvision. With torchvision installed the family's own processor is used, unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging

log = logging.getLogger(__name__)
NEEDS_TORCHVISION = "its video processor needs torchvision (images work without it)"


@functools.cache
def image_only(processor_class: type) -> type:
    """`processor_class` without its video processor (same name and settings: a folder it saves loads with the
    family's own processor wherever torchvision is installed)."""
    signature = inspect.signature(processor_class.__init__)

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        kwargs.pop("video_processor", None)
        processor_class.__init__(self, image_processor, tokenizer, None, **kwargs)

    # the family's own settings (image_seq_length, num_image_tokens, ...) are what transformers saves
    __init__.__signature__ = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name != "video_processor"])
    return type(processor_class.__name__, (processor_class,), {"__init__": __init__, "__module__": __name__,
                                                               "__qualname__": processor_class.__name__})


def load_image_only(processor_class: type, path: str):
    """The family's processor from a model folder, without its video part: its tokenizer, image processor, chat
    template and settings as saved there."""
    from transformers import AutoImageProcessor, AutoTokenizer

    settings = processor_class.get_processor_dict(path)[0]
    accepted = set(inspect.signature(image_only(processor_class).__init__).parameters) - {"self"}
    kwargs = {k: v for k, v in settings.items() if k in accepted and k not in ("image_processor", "tokenizer")}
    return image_only(processor_class)(image_processor=AutoImageProcessor.from_pretrained(path),
                                       tokenizer=AutoTokenizer.from_pretrained(path), **kwargs)


def takes_video(processor_class: type) -> bool:
    return "video_processor" in processor_class.get_attributes()


def load_processor(path: str, trust_remote_code: bool = False):
    """The family's processor (AutoProcessor); where its video part needs torchvision and torchvision is missing,
    the same processor without that part."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ImportError, OSError) as err:  # no torchvision, or a folder saved without the video part
        if "torchvision" not in str(err).lower() and "video processor" not in str(err).lower():
            raise
    processor_class = _processor_class(path)
    if processor_class is None or not takes_video(processor_class):
        raise ImportError(f"{path}: its processor needs torchvision: pip install torchvision")
    log.warning("torchvision is not installed: %s loads for images only (%s)", processor_class.__name__,
                NEEDS_TORCHVISION)
    return load_image_only(processor_class, path)


def _processor_class(path: str) -> type | None:
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = None
    try:
        name = transformers.ProcessorMixin.get_processor_dict(path)[0].get("processor_class")
    except (OSError, ValueError):
        pass
    if name is None:
        name = PROCESSOR_MAPPING_NAMES.get(AutoConfig.from_pretrained(path).model_type)
    return getattr(transformers, name, None) if name else None
