"""A task, declared in a few lines: data sources, prompt suffix, answer normaliser, metric."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from llava_cit.util.errors import UserError


@dataclass
class TaskSpec:
    name: str
    kind: str = "vision"  # "vision" (image + question) or "text" (instruction + input)
    train: dict[str, Any] = field(default_factory=dict)  # data source (see llava_cit.data.sources)
    test: dict[str, Any] = field(default_factory=dict)
    suffix: str = ""  # appended to every instruction, e.g. GQA's answer-format line
    normalizer: str = "lower"  # benchmarks.normalize.NORMALIZERS
    metric: str = "exact_match"  # any metric registered in benchmarks.metrics (METRICS), by name
    metric_args: dict[str, Any] = field(default_factory=dict)  # e.g. bertscore: {model_type: ..., num_layers: ...}
    extra_metrics: list[str] = field(default_factory=list)  # more registered metrics reported beside it, e.g. constraint_rate
    max_new_tokens: int = 16
    description: str = ""
    report: str = "mean"  # how the scored samples add up (benchmarks.reports, by name), e.g. ocrbench's official layout
    # how `llava-cit eval --data FILE` reads FILE for this task: llava, jsonl, or a benchmark file's reader
    # (llava_cit.data.benchmark_files: ocrbench, gqa, ocrvqa; its questions asked as the benchmark asks them, without
    # `suffix`); "": llava for a vision task, jsonl for a text task
    data_reader: str = ""
    source_file: str | None = None  # where the spec was read from (task files)

    def with_overrides(self, overrides: dict[str, Any]) -> TaskSpec:
        known = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in known:
                raise UserError(f"task '{self.name}': unknown key '{key}' (known: {', '.join(sorted(known))})")
        merged = dataclasses.asdict(self)
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return TaskSpec(**merged)

    def validate(self) -> TaskSpec:
        if self.kind not in ("vision", "text"):
            raise UserError(f"task '{self.name}': kind must be 'vision' or 'text', got '{self.kind}'")
        from benchmarks.metrics import METRICS
        from benchmarks.normalize import NORMALIZERS
        from benchmarks.reports import REPORTS

        for kind, name in [("metric", self.metric), *(("extra metric", m) for m in self.extra_metrics)]:
            if name not in METRICS:
                raise UserError(f"task '{self.name}': unknown {kind} '{name}' (known: {', '.join(METRICS.names())})")
        if self.report not in REPORTS:
            raise UserError(f"task '{self.name}': unknown report '{self.report}' (known: {', '.join(REPORTS.names())})")
        readers = data_readers()
        if self.data_reader and self.data_reader not in readers:
            raise UserError(f"task '{self.name}': unknown data_reader '{self.data_reader}' (known: {', '.join(readers)})")
        if self.normalizer not in NORMALIZERS:
            raise UserError(f"task '{self.name}': unknown normalizer '{self.normalizer}' "
                            f"(known: {', '.join(NORMALIZERS)})")
        return self

    def data_source(self, data: str, images: str | None) -> dict[str, Any]:
        """The test source that reads `data` (a file given to `llava-cit eval --data`) with this task's reader."""
        reader = self.data_reader or ("jsonl" if self.kind == "text" else "llava")
        if reader == "jsonl":
            return {"type": "jsonl", "path": data}
        if reader == "llava":
            return {"type": "llava", "path": data, "image_folder": images}
        return {"type": "benchmark", "benchmark": reader, "path": data, "images": images}


def data_readers() -> list[str]:
    """What a task's `data_reader` may name."""
    from llava_cit.data.benchmark_files import READERS

    return ["llava", "jsonl", *READERS]
