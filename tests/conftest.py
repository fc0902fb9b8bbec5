import os
import warnings

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("LLAVA_CIT_THREADS"):
    torch.set_num_threads(int(os.environ["LLAVA_CIT_THREADS"]))
warnings.filterwarnings("ignore")

from llava_cit.models.packaged import cache_root  # noqa: E402

USER_CACHE = cache_root()  # the user's cache, before the tests point LLAVA_CIT_CACHE elsewhere


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache (pre-trained bases, features), except the content-addressed model
    files fetched from PyPI and converted from GGUF: those are shared with the user's cache, so a test run does
    not download and de-quantise SmolLM2 again."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    for shared in ("packages", "gguf"):
        if not (cache / shared).exists():
            (USER_CACHE / shared).mkdir(parents=True, exist_ok=True)
            cache.mkdir(parents=True, exist_ok=True)
            (cache / shared).symlink_to(USER_CACHE / shared, target_is_directory=True)
    monkeypatch.setenv("LLAVA_CIT_CACHE", str(cache))


@pytest.fixture(scope="session")
def tiny_llava():
    from llava_cit.models.loading import load_model

    return load_model("tiny-llava")


def tiny_run_config(method: str = "switchcit", tasks=("synth-shapes", "synth-ocr"), **extra) -> dict:
    """A run small enough for a unit test: random tiny base, a few steps per stage."""
    config = {
        "model": "tiny-llava",
        "method": method,
        "tasks": list(tasks),
        "train_limit": 48,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "projector_lr": None},
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 48, "save_steps": 2},
        "retention": {"fraction": 0.0001, "min_count": 8},
        "switch": {"extractor": "tiny-opt", "hidden": 32, "epochs": 100},
        "eval": {"limit": 12, "batch_size": 12, "max_new_tokens": 3},
    }
    config.update(extra)
    return config
