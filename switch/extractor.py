"""Instruction features from a frozen language model: the last non-pad token's hidden state.

The model is loaded once per `FeatureExtractor` and reused for every call. Batches are
padded (either side works: the last real token is found from the attention mask).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

from switch.errors import SwitchError
from switch.tiny import tiny_opt, words_of

TINY_EXTRACTOR = "tiny-opt"


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at each row's last attended position (right or left padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask.long() * (positions + 1)).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


POOLING: dict[str, Callable] = {"last": last_token_pool, "mean": mean_pool}


class FeatureExtractor:
    """A frozen model turning texts into fixed-size features.

    `model_id` is a Hugging Face id or local path (default `facebook/opt-125m`), or
    `tiny-opt`: a small random OPT whose word vocabulary is built from the first texts
    it sees (offline use; its weights and tokenizer are saved with the switch).
    """

    def __init__(self, model_id: str = "facebook/opt-125m", layer: int = -1, pooling: str = "last",
                 device: str | None = None, batch_size: int = 64, max_length: int = 256,
                 cache_dir: str | Path | None = None, trust_remote_code: bool = False, seed: int = 0,
                 memory_cache: bool = True):
        if pooling not in POOLING:
            raise SwitchError(f"unknown pooling '{pooling}' (known: {', '.join(POOLING)})")
        self.model_id, self.layer, self.pooling = model_id, layer, pooling
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size, self.max_length, self.seed = batch_size, max_length, seed
        self.trust_remote_code = trust_remote_code
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._cache: dict[str, torch.Tensor] = {}
        self.memory_cache = memory_cache or cache_dir is not None
        self.model = None
        self.tokenizer = None
        self.load_count = 0  # how many times a model was loaded: once per extractor

    # -- loading -------------------------------------------------------------------------
    def _load(self, texts: Sequence[str] = ()) -> None:
        if self.model is not None:
            return
        if self.model_id == TINY_EXTRACTOR:
            self.model, self.tokenizer = tiny_opt(words_of(texts), seed=self.seed)
        else:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(self.model_id, trust_remote_code=self.trust_remote_code)
                self.model = AutoModel.from_pretrained(self.model_id, trust_remote_code=self.trust_remote_code)
            except (OSError, ValueError) as err:
                raise SwitchError(f"cannot load feature extractor '{self.model_id}': {str(err).splitlines()[0][:160]}") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # a long input is cut at its start: the instruction's end, where the last token is, always survives
        self.tokenizer.truncation_side = "left"
        self.model.to(self.device).eval()
        self.load_count += 1

    @classmethod
    def from_model(cls, model, tokenizer, model_id: str, **kwargs) -> FeatureExtractor:
        extractor = cls(model_id, **kwargs)
        extractor.model, extractor.tokenizer = model.to(extractor.device).eval(), tokenizer
        tokenizer.truncation_side = "left"
        return extractor

    def save_model(self, directory: Path) -> None:
        """Write the extractor's weights (safetensors) and tokenizer (for tiny, in-code extractors)."""
        self._load()
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    @property
    def feature_dim(self) -> int:
        self._load()
        return self.model.config.hidden_size

    def fingerprint(self) -> str:
        self._load()
        vocab = "".join(sorted(self.tokenizer.get_vocab())) if self.model_id == TINY_EXTRACTOR else ""
        key = f"{self.model_id}|{self.layer}|{self.pooling}|{self.seed}|{vocab}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    # -- features ------------------------------------------------------------------------
    @torch.inference_mode()
    def _encode(self, texts: list[str], views: list[tuple[int, str]]) -> list[torch.Tensor]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        hidden = self.model(**batch, output_hidden_states=True).hidden_states
        return [POOLING[pooling](hidden[layer], batch["attention_mask"]).float().cpu() for layer, pooling in views]

    def _key(self, view: tuple[int, str], digest: str) -> str:
        return digest if view == (self.layer, self.pooling) else f"{view[0]}/{view[1]}/{digest}"

    def features_at(self, texts: Sequence[str], views: Sequence[tuple[int, str]]) -> list[torch.Tensor]:
        """Features of `texts` at each (layer, pooling) view, from one forward pass per batch."""
        texts, views = list(texts), [(int(layer), pooling) for layer, pooling in views]
        if any(not t or not t.strip() for t in texts):
            raise SwitchError("empty instruction: the switch cannot route an empty text")
        unknown = sorted({pooling for _, pooling in views} - set(POOLING))
        if unknown:
            raise SwitchError(f"unknown pooling '{unknown[0]}' (known: {', '.join(POOLING)})")
        self._load(texts)
        self._read_cache()
        digests = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        missing = sorted({d: t for d, t in zip(digests, texts)
                          if any(self._key(view, d) not in self._cache for view in views)}.items())
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            for view, features in zip(views, self._encode([t for _, t in chunk], views)):
                for (digest, _), feature in zip(chunk, features):
                    self._cache[self._key(view, digest)] = feature
        if missing:
            self._write_cache()
        if not texts:
            return [torch.empty(0, self.feature_dim) for _ in views]
        out = [torch.stack([self._cache[self._key(view, d)] for d in digests]) for view in views]
        if not self.memory_cache:
            self._cache.clear()
        return out

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Features for `texts` at the extractor's own layer and pooling, shape (len(texts), feature_dim)."""
        return self.features_at(texts, [(self.layer, self.pooling)])[0]

    # -- on-disk cache (optional) ---------------------------------------------------------
    def _cache_file(self) -> Path | None:
        return self.cache_dir / f"features-{self.fingerprint()}.safetensors" if self.cache_dir else None

    def _read_cache(self) -> None:
        path = self._cache_file()
        if path is not None and path.is_file() and not self._cache:
            self._cache.update(load_file(str(path)))

    def _write_cache(self) -> None:
        path = self._cache_file()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({k: v.contiguous() for k, v in self._cache.items()}, tmp)
        os.replace(tmp, path)

    def clear_memory_cache(self) -> None:
        self._cache.clear()
