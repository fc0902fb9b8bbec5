"""A fault corpus for a finished run's artifacts: what is served is what was verified (issue 27, point 2).

One tiny two-task switchcit run is trained once; each test damages a copy of it (16 bytes flipped inside an
adapter, manifest or results paths that leave the run directory, a symlink out of it) and checks that every
command that loads the run refuses with one line naming the file, and that nothing outside the run is hashed.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import tiny_run_config
from test_cli import cli

import llava_cit.util.atomic
from llava_cit.config import load_config
from llava_cit.continual.manifest import verified_switch
from llava_cit.continual.report import read_results
from llava_cit.continual.runner import ContinualRunner
from llava_cit.continual.status import print_status, run_status
from llava_cit.serve.run_server import RunServer
from llava_cit.util.atomic import dir_checksums
from llava_cit.util.errors import UserError
from switch import SwitchNetwork
from switch.errors import SwitchError

ADAPTER = "adapters/00-synth-shapes"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    config = tiny_run_config()
    (folder / "c.yaml").write_text(yaml.safe_dump(config))
    ContinualRunner(load_config(None, base=config), folder / "run").run()
    return folder


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    shutil.copy(finished / "c.yaml", tmp_path / "c.yaml")
    shutil.copytree(finished / "run", tmp_path / "run")
    return tmp_path / "run"


def flip_16_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the tensor data: the file still parses, its weights are wrong
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def one_line_error(result, *fragments) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def hashed(monkeypatch) -> list[Path]:
    """Every file hashed while the test runs (through the one hashing helper the manifest uses)."""
    seen: list[Path] = []
    original = llava_cit.util.atomic.sha256_file

    def recording(path):
        seen.append(Path(path).resolve())
        return original(path)

    monkeypatch.setattr(llava_cit.util.atomic, "sha256_file", recording)
    return seen


def test_eval_run_refuses_a_tampered_adapter_with_one_line(run_copy, tmp_path):
    flip_16_bytes(run_copy / ADAPTER / "adapter_model.safetensors")
    for extra in ([], ["--adapter", "synth-shapes"]):
        out = tmp_path / f"eval{len(extra)}"
        result = cli("eval", "--benchmark", "synth-ocr", "--run", str(run_copy), *extra, "--limit", "2", "--out", str(out))
        one_line_error(result, "checksum mismatch", f"{ADAPTER} (adapter_model.safetensors)")
        assert not out.exists()  # no prediction was made with the damaged adapter
    # serving in-process and a resume refuse it the same way
    with pytest.raises(UserError, match="checksum mismatch .*adapter_model.safetensors"):
        RunServer(run_copy)
    with pytest.raises(UserError, match="checksum mismatch .*adapter_model.safetensors"):
        ContinualRunner(load_config(None, base=tiny_run_config()), run_copy).run()
    status = run_status(run_copy)
    assert status["finished"][0]["checksums"].startswith("NOT verified: checksum mismatch")
    lines = []
    print_status(status, lines.append)
    assert "all stages finished, but stage 0 NOT verified: do not trust results.json" in lines
    assert not any("results.json is final" in line for line in lines)


def test_producer_records_the_checksums_of_the_files_served(run_copy, tmp_path):
    result = cli("eval", "--benchmark", "synth-ocr", "--run", str(run_copy), "--adapter", "synth-ocr", "--limit", "2",
                 "--out", str(tmp_path / "e"))
    assert result.returncode == 0, result.stderr
    source = json.loads((tmp_path / "e/producer.json").read_text())["source"]
    # the one adapter served, hashed from its bytes (the manifest's stage 1 also lists the switch: not served here)
    assert source["checksums"] == {"adapters/01-synth-ocr": dir_checksums(run_copy / "adapters/01-synth-ocr")}
    routed = RunServer(run_copy, lazy_adapters=True).checksums
    assert sorted(routed) == [ADAPTER, "adapters/01-synth-ocr", "switch/stage-01"]
    weights = run_copy / "switch/stage-01/switch.safetensors"
    assert routed["switch/stage-01"]["switch.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.mark.parametrize("field", ["adapter", "serving", "checksums"])
def test_manifest_paths_leaving_the_run_are_refused_and_never_hashed(run_copy, hashed, field):
    escape = "../../../../etc"

    def change(manifest):
        stage = manifest["stages"][0]
        if field == "checksums":
            stage["checksums"][escape] = {"passwd": "0" * 64}
        elif field == "serving":
            stage["serving"]["synth-shapes"] = escape
        else:
            stage["adapter"] = escape

    results_before = (run_copy / "results.json").read_text()
    edit_json(run_copy / "manifest.json", change)
    status = run_status(run_copy)
    assert status["finished"][0]["checksums"].startswith("NOT verified:")
    assert f"'{escape}' escapes the run directory" in status["finished"][0]["checksums"]
    assert status["finished"][1]["checksums"] == "verified"
    with pytest.raises(UserError, match="escapes the run directory"):  # a resume refuses before writing results.json
        ContinualRunner(load_config(None, base=tiny_run_config()), run_copy).run()
    assert (run_copy / "results.json").read_text() == results_before
    run_root = run_copy.resolve()
    assert hashed and all(run_root in path.parents for path in hashed)
    with pytest.raises(UserError, match="escapes the run directory"):
        read_results(run_copy)  # `report`


def test_a_manifest_stage_without_checksums_is_not_verified(run_copy, hashed):
    original = (run_copy / "manifest.json").read_text()
    edit_json(run_copy / "manifest.json", lambda m: m["stages"][1].pop("checksums"))
    status = run_status(run_copy)
    assert status["finished"][1]["checksums"] == (f"NOT verified: stage 1 of {run_copy / 'manifest.json'}: no "
                                                  f"'checksums' of its artifacts (field 'checksums')")
    with pytest.raises(UserError, match="no 'checksums' of its artifacts"):
        RunServer(run_copy)
    (run_copy / "manifest.json").write_text(original)
    edit_json(run_copy / "manifest.json", lambda m: m["stages"][0].pop("seconds"))
    one_line_error(cli("report", str(run_copy), "--no-plots"), "manifest.json: a finished stage lacks a field")


def test_a_verified_copy_outside_the_run_is_not_served(run_copy, tmp_path):
    """A serving path to an identical copy of the adapter outside the run: the checksums match, the path does not."""
    outside = tmp_path / "elsewhere"
    shutil.copytree(run_copy / ADAPTER, outside)
    rel = "../elsewhere"
    edit_json(run_copy / "manifest.json", lambda m: [s["serving"].update({"synth-shapes": rel})
                                                     for s in [*m["stages"], m["serving"]]])
    edit_json(run_copy / "results.json", lambda r: r["serving"].update({"synth-shapes": rel}))
    with pytest.raises(UserError, match="'../elsewhere' escapes the run directory"):
        RunServer(run_copy)
    one_line_error(cli("report", str(run_copy), "--no-plots"), "escapes the run directory")


def test_a_symlink_out_of_the_run_is_refused_not_hashed(run_copy, tmp_path, hashed):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    config = run_copy / ADAPTER / "adapter_config.json"
    config.unlink()
    config.symlink_to(secret)
    status = run_status(run_copy)
    assert "escapes the run directory" in status["finished"][0]["checksums"]
    assert secret.resolve() not in hashed
    with pytest.raises(UserError, match="escapes the run directory"):
        RunServer(run_copy, adapter="synth-shapes")


def test_results_json_that_disagrees_with_the_manifest_is_refused(run_copy):
    results = run_copy / "results.json"
    original = results.read_text()
    edit_json(results, lambda r: r["matrix"][1].__setitem__(0, r["matrix"][1][0] + 0.5))
    one_line_error(cli("report", str(run_copy), "--no-plots"), "results.json: field 'matrix' disagrees with the run's "
                                                               "manifest.json")
    results.write_text(original)
    edit_json(run_copy / "results.json", lambda r: r["adapters"].update({"synth-shapes": "adapters/01-synth-ocr"}))
    with pytest.raises(UserError, match="field 'adapters' disagrees"):
        read_results(run_copy)
    # serving reads the manifest, not the report: the adapter the manifest records serves
    assert RunServer(run_copy, adapter="synth-shapes").serving == {"synth-shapes": ADAPTER}


def test_route_checks_a_run_switch_against_the_manifest(run_copy):
    switch_dir = run_copy / "switch/stage-01"
    assert verified_switch(switch_dir)
    # damaged and re-signed in switch.json: the switch's own checksums agree, the manifest's do not
    weights = switch_dir / "switch.safetensors"
    flip_16_bytes(weights)
    edit_json(switch_dir / "switch.json",
              lambda m: m["checksums"].update({"switch.safetensors": hashlib.sha256(weights.read_bytes()).hexdigest()}))
    SwitchNetwork.load(switch_dir)  # on its own, the re-signed switch loads
    one_line_error(cli("route", str(switch_dir), "What is written?"), "checksum mismatch", "switch/stage-01")
    with pytest.raises(UserError, match="checksum mismatch .*switch/stage-01"):
        RunServer(run_copy)


def test_switch_json_paths_stay_inside_the_switch(run_copy):
    switch_dir = run_copy / "switch/stage-01"
    edit_json(switch_dir / "switch.json", lambda m: m.update(extractor_path="../../../../etc"))
    with pytest.raises(SwitchError, match="extractor_path '../../../../etc' escapes the switch directory"):
        SwitchNetwork.load(switch_dir)
    edit_json(switch_dir / "switch.json", lambda m: m.update(extractor_path="extractor",
                                                             checksums={"../../../../etc/passwd": "0" * 64}))
    with pytest.raises(SwitchError, match="escapes the switch directory"):
        SwitchNetwork.load(switch_dir)


def test_a_lazy_adapter_replaced_after_verification_is_not_loaded(run_copy, tmp_path):
    server = RunServer(run_copy, lazy_adapters=True)
    assert server.loaded_adapters == ["synth-shapes"]  # synth-ocr's adapter is verified now, loaded on first use
    weights = run_copy / "adapters/01-synth-ocr/adapter_model.safetensors"
    replacement = tmp_path / "replacement.safetensors"
    shutil.copy(weights, replacement)
    flip_16_bytes(replacement)
    replacement.replace(weights)
    with pytest.raises(UserError, match="01-synth-ocr changed after it was verified"):
        server.ensure_loaded({"synth-ocr"})


@pytest.mark.parametrize("name", ["manifest.json", "results.json"])
def test_run_json_files_linked_from_outside_are_refused(run_copy, tmp_path, name):
    outside = tmp_path / f"outside-{name}"
    shutil.move(run_copy / name, outside)
    (run_copy / name).symlink_to(outside)
    if name == "manifest.json":  # what serving reads
        with pytest.raises(UserError, match=f"{name} \\(a link\\) '{name}' escapes the run directory"):
            RunServer(run_copy)
    else:  # a report: serving never reads it
        assert RunServer(run_copy, lazy_adapters=True).tasks == ["synth-shapes", "synth-ocr"]
    with pytest.raises(UserError, match="escapes the run directory"):
        read_results(run_copy)


def test_an_upper_bound_taken_from_another_run_is_checked_against_its_manifest(run_copy, tmp_path):
    edit_json(run_copy / "results.json", lambda r: r["upper_bound"].update({"synth-shapes": 1.0}))
    config = tiny_run_config(tasks=["synth-shapes"], eval={"limit": 4, "batch_size": 4, "max_new_tokens": 2,
                                                           "upper_bound_from": str(run_copy)})
    with pytest.raises(UserError, match="field 'upper_bound' disagrees with the run's manifest.json"):
        ContinualRunner(load_config(None, base=config), tmp_path / "new").run()
    assert not (tmp_path / "new/results.json").exists()
