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


def _kept(logger_name: str, message: str) -> bool:
    record = logging.LogRecord(logger_name, logging.WARNING, __file__, 1, message, None, None)
    return bool(logging.getLogger(logger_name).filter(record))


def test_bitsandbytes_and_kernels_cpu_kernel_lookup_messages_are_dropped_where_bitsandbytes_is_installed():
    # the messages exactly as bitsandbytes 0.50 and kernels 0.19 log them (the format string, then the f-string)
    assert not _kept("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community: %s. "
                     "Please make sure you already `pip install kernels` and the kernels >= 0.11.1")
    assert not _kept("kernels._internals.hf_hub", "Skipping publisher trust check for "
                     "'kernels-community/quantization-bitsandbytes' because Hugging Face Hub is in offline mode.")
    # another repository's trust check, or anything else those loggers say, still shows
    assert _kept("kernels._internals.hf_hub", "Skipping publisher trust check for 'someone/else' because Hugging Face "
                 "Hub is in offline mode.")
    assert _kept("bitsandbytes.backends.cpu.ops", "a warning the user can act on")


def test_the_core_install_does_not_pull_bitsandbytes():
    """bitsandbytes is the `qlora`/`gpu` extra: a CPU install never has it, so nothing imports it (peft imports it
    whenever it is installed, and it then looks up a CPU kernel through `kernels`)."""
    from importlib.metadata import requires

    needs = requires("llava-cit") or []
    bnb = [r for r in needs if r.lower().startswith("bitsandbytes")]
    assert bnb and all("extra ==" in r for r in bnb), bnb
    assert {r.split("extra ==")[1].strip().strip("'\"") for r in bnb} == {"qlora", "gpu"}


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_a_cpu_command_imports_neither_bitsandbytes_nor_a_kernel():
    code = ("import sys, llava_cit.continual.runner, llava_cit.train.trainer, peft, transformers.trainer; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bitsandbytes', 'kernels')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = done.stdout.strip().splitlines()[-1]
    assert "bitsandbytes" not in imported, imported
    assert "Skipping publisher trust check" not in done.stderr and "gemm_4bit_forward" not in done.stderr
