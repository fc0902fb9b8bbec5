"""Messages from libraries that a user cannot act on, filtered before those libraries are imported.

The root fix comes first: bitsandbytes is not in the core install (it is the `qlora` extra, for CUDA 4-bit
loading), so on a CPU install nothing imports it. Where it is installed, peft imports it on every import, and on a
CPU with AVX512-BF16 bitsandbytes then asks the `kernels` package for an optional 4-bit CPU kernel this toolkit never
uses: `kernels` says "Skipping publisher trust check ..." (hub offline) and bitsandbytes "Failed to load CPU
gemm_4bit_forward ..." when that fails. DeepSpeed, when installed, warns "Setting accelerator to CPU" on every import
on a machine without a GPU (the transformers Trainer imports it even when DeepSpeed is not used).

Each filter is keyed on the exact logger the library logs to (its module's `__name__`) and on the fixed start of
the message (the part before any formatted value), so a reworded message shows again rather than a different one
being hidden. Only those messages are dropped; every other record of those loggers still shows.
"""

from __future__ import annotations

import logging

UNACTIONABLE = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
    "kernels._internals.hf_hub": ("Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'",),
    "DeepSpeed": ("Setting accelerator to CPU",),
}


class _DropPrefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def install() -> None:
    for name, prefixes in UNACTIONABLE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefixes) for f in logger.filters):
            logger.addFilter(_DropPrefixes(prefixes))
