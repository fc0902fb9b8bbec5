"""SwitchCIT's switch network: route instructions to per-task adapters (stands alone; no llava_cit).

The names below load on first use (PEP 562), so `from switch.errors import SwitchError` (the command line does it
for every command) does not import torch and transformers."""

from importlib import import_module

_HOMES = {
    "SwitchClassifier": "switch.classifier", "SWITCH_DEFAULTS": "switch.defaults", "SwitchDefaults": "switch.defaults",
    "SwitchError": "switch.errors", "FeatureExtractor": "switch.extractor", "last_token_pool": "switch.extractor",
    "mean_pool": "switch.extractor", "switch_text": "switch.instruction", "SwitchNetwork": "switch.network",
    "Rejection": "switch.rejection", "RejectionView": "switch.rejection", "retain": "switch.retention",
    "retained_count": "switch.retention",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'switch' has no attribute '{name}'")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
