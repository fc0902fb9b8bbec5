"""The run directory's manifest: finished stages (llava_cit.continual.stage.StageRecord) and their artifacts'
checksums, and how the run is served after the last of them (`serving`, llava_cit.serve.serving_plan).

Every path the manifest names (adapters, serving map, switch, checksummed artifacts) must stay inside the run
directory, and only files inside it are ever hashed: an escaping path is refused, never followed.
"""

from __future__ import annotations

import json
from pathlib import Path

from llava_cit.data.paths import resolve_under
from llava_cit.util.atomic import dir_checksums, write_json
from llava_cit.util.errors import UserError
from llava_cit.util.text_files import read_utf8

MANIFEST = "manifest.json"


def inside_run(run_dir: Path, rel, what: str) -> Path:
    """`run_dir / rel` resolved (symlinks followed); refused unless it stays inside the run directory."""
    if not isinstance(rel, str) or not rel:
        raise UserError(f"{what} is not a path inside the run directory: {rel!r}")
    return resolve_under(run_dir, rel, what, "the run directory")


class Manifest:
    def __init__(self, run_dir: Path):
        self.path = run_dir / MANIFEST
        self.run_dir = run_dir
        self.stages: list[dict] = []
        self.serving: dict | None = None  # None: no stage finished, or a run written before serving was recorded
        if self.path.is_file():
            inside_run(run_dir, MANIFEST, f"{self.path} (a link)")
            try:
                stored = json.loads(read_utf8(self.path))
                self.stages, self.serving = stored["stages"], stored.get("serving")
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
                raise UserError(f"{self.path}: unreadable manifest ({err})") from None
            if not isinstance(self.stages, list) or not all(isinstance(stage, dict) for stage in self.stages):
                raise UserError(f"{self.path}: unreadable manifest ('stages' must be a list of mappings)")

    def done(self, index: int) -> dict | None:
        return self.stages[index] if index < len(self.stages) else None

    def _paths(self, index: int) -> list[tuple[str, str]]:
        """(what, path) of every path stage `index` names."""
        entry, where = self.stages[index], f"stage {index} of {self.path}"
        checksums = entry.get("checksums")
        if not isinstance(checksums, dict) or not all(isinstance(v, dict) for v in checksums.values()):
            raise UserError(f"{where}: no 'checksums' of its artifacts (field 'checksums')")
        paths = [(f"an artifact (field 'checksums') of {where}", rel) for rel in checksums]
        paths += [(f"field '{key}' of {where}", entry[key]) for key in ("adapter", "switch", "started_from")
                  if entry.get(key) is not None]
        paths += [(f"the serving path of '{task}' (field 'serving') of {where}", rel)
                  for task, rel in (entry.get("serving") or {}).items()]
        return paths

    def check_paths(self, index: int) -> None:
        """Every path stage `index` names stays inside the run directory."""
        for what, rel in self._paths(index):
            inside_run(self.run_dir, rel, what)

    def checksums_of(self, rel: str, what: str) -> dict[str, str]:
        """{file: sha256} of the artifact folder `rel` (as `record` computes them), hashing only files inside the run
        directory."""
        path = inside_run(self.run_dir, rel, what)
        for file in (p for p in sorted(path.rglob("*")) if p.is_file()):
            inside_run(self.run_dir, str(file.relative_to(self.run_dir.resolve())), f"file {file} of {what}")
        return dir_checksums(path)

    def _compare(self, rel: str, expected: dict, actual: dict, index: int) -> None:
        if actual != expected:
            changed = sorted(set(actual.items()) ^ set(expected.items()))
            name = changed[0][0] if changed else "?"
            raise UserError(f"checksum mismatch in {self.run_dir / rel} ({name}): the artifact was changed "
                            f"after stage {index} finished")

    def verify(self, index: int) -> None:
        """Every artifact of a finished stage is inside the run directory and still has the checksum it was saved
        with."""
        self.check_paths(index)
        for rel, expected in self.stages[index]["checksums"].items():
            self._compare(rel, expected, self.checksums_of(rel, f"artifact '{rel}' of stage {index}"), index)

    def verify_artifact(self, rel: str, what: str) -> dict[str, str]:
        """The checksums of artifact `rel` (`what`: where its path was read), computed from its files now and
        equal to those a finished stage recorded; refused when no finished stage lists it."""
        target = inside_run(self.run_dir, rel, what)
        for index, entry in enumerate(self.stages):
            self.check_paths(index)
            for listed, expected in entry["checksums"].items():
                if inside_run(self.run_dir, listed, f"artifact '{listed}' of stage {index}") == target:
                    actual = self.checksums_of(rel, what)
                    self._compare(rel, expected, actual, index)
                    return actual
        raise UserError(f"{what} '{rel}': no finished stage in {self.path} lists its checksums, so it cannot be "
                        f"verified")

    def lists(self, rel: str) -> bool:
        """Whether a finished stage records checksums for `rel` (compared as written)."""
        return any(rel in (entry.get("checksums") or {}) for entry in self.stages)

    def task_specs(self) -> dict:
        """{name: TaskSpec} of the finished stages' tasks read from task files (as they were trained)."""
        from llava_cit.tasks.spec import TaskSpec

        specs = {}
        for stage in self.stages:
            if isinstance(stage.get("task_spec"), dict):
                try:
                    specs[stage["task"]] = TaskSpec(**stage["task_spec"]).validate()
                except TypeError as err:
                    raise UserError(f"{self.path}: stage {stage.get('stage')}: unreadable task_spec ({err})") from None
        return specs

    def serving_after_last(self) -> dict[str, str]:
        """{task: folder} serving each task after the last finished stage (empty before the first)."""
        return dict(self.stages[-1].get("serving") or {}) if self.stages else {}

    def record(self, entry: dict, artifacts: list[str], serving: dict | None = None) -> None:
        """Append a finished stage (its artifacts' checksums computed now) and how the run is served after it."""
        entry = dict(entry, checksums={rel: dir_checksums(self.run_dir / rel) for rel in artifacts})
        self.stages.append(entry)
        self.serving = serving if serving is not None else self.serving
        stored = {"stages": self.stages}
        if self.serving is not None:
            stored["serving"] = self.serving
        write_json(self.path, stored)


def verified_switch(switch_dir: Path) -> bool:
    """A switch folder of a run (`RUN/switch/stage-NN`) whose manifest lists it: verified against the manifest
    (True; refused on a mismatch). False for any other folder (its own switch.json checksums apply)."""
    switch_dir = Path(switch_dir).resolve()
    run_dir = switch_dir.parent.parent
    rel = f"{switch_dir.parent.name}/{switch_dir.name}"
    if not (run_dir / MANIFEST).is_file():
        return False
    manifest = Manifest(run_dir)
    if not manifest.lists(rel):
        return False
    manifest.verify_artifact(rel, f"switch folder {switch_dir}")
    return True
