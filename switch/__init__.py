"""SwitchCIT's switch network: route instructions to per-task adapters (stands alone; no llava_cit)."""

from switch.classifier import SwitchClassifier
from switch.defaults import SWITCH_DEFAULTS, SwitchDefaults
from switch.errors import SwitchError
from switch.extractor import FeatureExtractor, last_token_pool, mean_pool
from switch.instruction import switch_text
from switch.network import SwitchNetwork
from switch.rejection import Rejection, RejectionView
from switch.retention import retain, retained_count

__all__ = ["SWITCH_DEFAULTS", "FeatureExtractor", "Rejection", "RejectionView", "SwitchClassifier", "SwitchDefaults",
           "SwitchError", "SwitchNetwork", "last_token_pool", "mean_pool", "retain", "retained_count", "switch_text"]
