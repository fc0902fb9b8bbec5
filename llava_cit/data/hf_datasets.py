"""Load a Hugging Face dataset with a one-line error when it cannot be had (offline, wrong id)."""

from __future__ import annotations

from llava_cit.util.errors import UserError


def load_hf_dataset(path: str, name: str | None = None, split: str = "train", data_files=None):
    import datasets

    try:
        return datasets.load_dataset(path, name, split=split, data_files=data_files)
    except Exception as err:  # the hub is unreachable offline, or the dataset id is wrong
        raise UserError(f"cannot load Hugging Face dataset '{path}': {str(err).splitlines()[0][:160]}") from None
