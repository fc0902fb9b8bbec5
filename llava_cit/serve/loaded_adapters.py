"""The LoRA adapters loaded on one base model, each known by the run-directory folder it holds.

PEFT names the adapters of a model; a run names them by folder (`adapters/01-synth-ocr`,
`method_state/eproj/stage-01/synth-shapes`). The runner trains adapters into this set and records the folder
each one is published at; a routed model asks for a folder's adapter and gets its name, loaded on first use (a
folder already in memory is never loaded twice). `before_load` (serving) checks a folder before it loads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from peft import PeftModel

from llava_cit.config import LoraSettings
from llava_cit.methods.adapter_loading import load_adapter
from llava_cit.train.trainer import add_adapter


class LoadedAdapters:
    def __init__(self, base, run_dir: Path, before_load: Callable[[str], Path] | None = None):
        self.base, self.run_dir, self.before_load = base, Path(run_dir), before_load
        self.peft: PeftModel | None = None
        self.names: dict[str, str] = {}  # folder -> the name of the adapter loaded (or trained) from it

    @property
    def model(self):
        """What generates and trains: the PEFT model once an adapter is in, else the bare base."""
        return self.peft if self.peft is not None else self.base

    @property
    def loaded(self) -> list[str]:
        return list(self.peft.peft_config) if self.peft is not None else []

    def _path(self, folder: str) -> Path:
        return self.before_load(folder) if self.before_load is not None else self.run_dir / folder

    def load(self, folder: str, name: str, trainable: bool = False) -> PeftModel:
        """The adapter saved in `folder`, loaded as `name` (kept as it is when `name` is loaded already). A trainable
        copy is the start of a new adapter: it is not recorded as `folder`'s."""
        if self.peft is None or name not in self.peft.peft_config:  # (MoELoRA's gates too: methods.adapter_loading)
            self.peft = load_adapter(self.peft or self.base, self._path(folder), name, trainable)
        if not trainable:
            self.names[folder] = name
        return self.peft

    def add(self, name: str, lora: LoraSettings, is_vision: bool) -> PeftModel:
        """A fresh adapter `name` (its initial weights drawn from torch's generator, as seeded by the caller)."""
        self.peft = add_adapter(self.model, name, lora, is_vision)
        return self.peft

    def published(self, folder: str, name: str) -> None:
        """Adapter `name`, trained in memory, is the one now saved in `folder`."""
        self.names[folder] = name

    def name_of(self, folder: str, preferred: str) -> str:
        """The name of `folder`'s adapter, loaded now if it is not in memory: `preferred` unless another adapter has
        it, else a name made from the folder."""
        if folder in self.names:
            return self.names[folder]
        taken = set(self.loaded)
        name = preferred if preferred not in taken else folder.replace("/", "__").replace(".", "_")
        self.load(folder, name)
        return name

    def drop(self, name: str) -> None:
        """Delete adapter `name` from the model (and forget the folder it held)."""
        self.peft.delete_adapter(name)
        self.names = {folder: n for folder, n in self.names.items() if n != name}
