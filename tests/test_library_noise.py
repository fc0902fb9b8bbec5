"""Library messages a user cannot act on are dropped; others still show."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import pytest

import llava_cit  # noqa: F401  (installs the filters)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")
def test_deepspeed_cpu_accelerator_notice_is_dropped_on_a_machine_without_gpu():
    code = "import llava_cit, deepspeed; from deepspeed.accelerator import get_accelerator; print(get_accelerator()._name)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Setting accelerator to CPU" not in done.stderr + done.stdout
    assert done.stdout.strip().splitlines()[-1] in ("cpu", "cuda")


def test_only_the_listed_messages_are_dropped():
    logger = logging.getLogger("DeepSpeed")

    def kept(message: str) -> bool:
        record = logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, message, None, None)
        return bool(logger.filter(record))  # the logger's own filters, whatever handlers earlier tests left

    assert not kept("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.")
    assert kept("a warning the user can act on")
