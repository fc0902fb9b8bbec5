"""The run directory's manifest: finished stages and their artifacts' checksums."""

from __future__ import annotations

import json
from pathlib import Path

from llava_cit.atomic import dir_checksums, write_json
from llava_cit.errors import UserError

MANIFEST = "manifest.json"


class Manifest:
    def __init__(self, run_dir: Path):
        self.path = run_dir / MANIFEST
        self.run_dir = run_dir
        self.stages: list[dict] = []
        if self.path.is_file():
            try:
                self.stages = json.loads(self.path.read_text(encoding="utf-8"))["stages"]
            except (json.JSONDecodeError, KeyError) as err:
                raise UserError(f"{self.path}: unreadable manifest ({err})") from None

    def done(self, index: int) -> dict | None:
        return self.stages[index] if index < len(self.stages) else None

    def verify(self, index: int) -> None:
        """Every artifact of a finished stage still has the checksum it was saved with."""
        entry = self.stages[index]
        for rel, expected in entry["checksums"].items():
            actual = dir_checksums(self.run_dir / rel)
            if actual != expected:
                changed = sorted(set(actual.items()) ^ set(expected.items()))
                name = changed[0][0] if changed else "?"
                raise UserError(f"checksum mismatch in {self.run_dir / rel} ({name}): the artifact was changed "
                                f"after stage {index} finished")

    def record(self, entry: dict, artifacts: list[str]) -> None:
        entry = dict(entry, checksums={rel: dir_checksums(self.run_dir / rel) for rel in artifacts})
        self.stages.append(entry)
        write_json(self.path, {"stages": self.stages})
