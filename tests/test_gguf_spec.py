"""Which model specs are read as GGUF checkpoints (the conversion itself is tested on SmolLM2 under real_model)."""

import pytest

from llava_cit.models.packaged import resolve_model_spec
from llava_cit.util.errors import UserError


def test_a_folder_of_several_gguf_files_asks_which_one(tmp_path):
    for name in ("model-Q4_1.gguf", "model-Q8_0.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    with pytest.raises(UserError) as err:
        resolve_model_spec(str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "model-Q4_1.gguf" in message and "model-Q8_0.gguf" in message


def test_hugging_face_folders_and_ids_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "extra.gguf").write_bytes(b"GGUF")  # a folder with a config is a Hugging Face folder
    assert resolve_model_spec(str(tmp_path)) == str(tmp_path)
    assert resolve_model_spec("llava-hf/llava-1.5-7b-hf") == "llava-hf/llava-1.5-7b-hf"


def test_a_gguf_checksum_is_read_once_per_process_until_the_file_changes(tmp_path, monkeypatch):
    import hashlib

    import llava_cit.models.packaged as packaged

    reads = []
    real = packaged.file_sha256
    monkeypatch.setattr(packaged, "file_sha256", lambda path: reads.append(path) or real(path))
    packaged._checksum.cache_clear()
    file = tmp_path / "model.gguf"
    file.write_bytes(b"GGUF one")
    assert packaged.gguf_checksum(file) == packaged.gguf_checksum(file) == hashlib.sha256(b"GGUF one").hexdigest()
    assert len(reads) == 1
    file.write_bytes(b"GGUF two, longer")
    assert packaged.gguf_checksum(file) == hashlib.sha256(b"GGUF two, longer").hexdigest() and len(reads) == 2
