"""The run directory's manifest: finished stages and their artifacts' checksums."""

from __future__ import annotations

import json
from pathlib import Path

from llava_cit.atomic import dir_checksums, write_json
from llava_cit.errors import UserError
from llava_cit.text_files import read_utf8

MANIFEST = "manifest.json"


class Manifest:
    def __init__(self, run_dir: Path):
        self.path = run_dir / MANIFEST
        self.run_dir = run_dir
        self.stages: list[dict] = []
        if self.path.is_file():
            try:
                self.stages = json.loads(read_utf8(self.path))["stages"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise UserError(f"{self.path}: unreadable manifest ({err})") from None
            if not isinstance(self.stages, list) or not all(isinstance(stage, dict) for stage in self.stages):
                raise UserError(f"{self.path}: unreadable manifest ('stages' must be a list of mappings)")

    def done(self, index: int) -> dict | None:
        return self.stages[index] if index < len(self.stages) else None

    def verify(self, index: int) -> None:
        """Every artifact of a finished stage still has the checksum it was saved with."""
        entry = self.stages[index]
        if not isinstance(entry.get("checksums"), dict):
            raise UserError(f"{self.path}: stage {index} has no checksums to verify its artifacts against")
        for rel, expected in entry["checksums"].items():
            actual = dir_checksums(self.run_dir / rel)
            if actual != expected:
                changed = sorted(set(actual.items()) ^ set(expected.items()))
                name = changed[0][0] if changed else "?"
                raise UserError(f"checksum mismatch in {self.run_dir / rel} ({name}): the artifact was changed "
                                f"after stage {index} finished")

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

    def record(self, entry: dict, artifacts: list[str]) -> None:
        entry = dict(entry, checksums={rel: dir_checksums(self.run_dir / rel) for rel in artifacts})
        self.stages.append(entry)
        write_json(self.path, {"stages": self.stages})
