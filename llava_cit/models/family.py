"""Which model family a spec is, where prompting depends on it: LLaVA-1.5's conversation and system prompt for LLaVA
models, the model's own chat template (and its default system prompt) for every other image-text-to-text family."""

from __future__ import annotations

from llava_cit.data.prompts import LLAVA_SYSTEM, NAMED_SYSTEM_PROMPTS


def is_llava_model(spec: str) -> bool:
    """Whether model `spec` is a LLaVA (config model_type `llava`); a configuration that cannot be read here (a Hub id
    offline) counts as one, as every vision model did before other families were supported."""
    from llava_cit.models.loading import MODEL_SPECS
    from llava_cit.models.tiny_vlm import TINY_FAMILIES

    if spec in TINY_FAMILIES:
        return False
    if spec in MODEL_SPECS:
        return True  # tiny-llava, smollm2-llava
    try:
        from transformers import AutoConfig

        from llava_cit.models.packaged import resolve_model_spec

        return AutoConfig.from_pretrained(resolve_model_spec(spec)).model_type == "llava"
    except Exception:  # noqa: BLE001 - any unreadable configuration: the LLaVA default
        return True


def resolve_system_prompt(value: str | None, is_vision: bool, spec: str) -> str | None:
    """`auto` (the default): LLaVA-1.5's vicuna_v1 system prompt for a LLaVA model, none for a text model, another
    image-text-to-text family (its chat template has its own default) or the built-in tiny specs (their word
    vocabulary has no system prompt); a named template; or the text itself."""
    if value is None:
        return None
    if value == "auto":
        return LLAVA_SYSTEM if (is_vision and not spec.startswith("tiny-") and is_llava_model(spec)) else None
    if value in NAMED_SYSTEM_PROMPTS:
        return NAMED_SYSTEM_PROMPTS[value]
    return value
