"""Messages from libraries that a user cannot act on, filtered before those libraries are imported.

bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community ..." on every import on a
CPU with AVX512-BF16 (it looks for an optional `kernels` package for a 4-bit CPU kernel this toolkit never
uses: 4-bit is GPU-only here). DeepSpeed, when installed, warns "Setting accelerator to CPU" on every import on a
machine without a GPU (the transformers Trainer imports it even when DeepSpeed is not used). Only those messages
are dropped; every other warning still shows.
"""

from __future__ import annotations

import logging

UNACTIONABLE = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
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
