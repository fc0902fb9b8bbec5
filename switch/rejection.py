"""Unknown-task rejection: a query unlike every learned task gets no task, and the caller serves it with the bare
base model.

Rejection reads one or more views of the switch's extractor, a (layer, pooling) each, all from the routing forward
pass: view 0 is the rejection features' own (default the routing features'), the further ones (cosine only) come
after it. In each view the distinct retained instructions form a bank, and a query is known in that view when:
- leave-one-out rule: its nearest bank row lies within the `quantile` of the bank rows' leave-one-out
  nearest-neighbour distances × (1 + margin); distances are euclidean in standardised features or cosine;
- calibrated rule (cosine only): it lies within some bank row's own radius: the `quantile` of the distances of
  that task's non-retained instructions that lie nearest to the row × (1 + margin) (float noise when none do;
  `Rejection.calibration_distances` measures them while a task's data is at hand); rows of tasks without
  calibration keep the leave-one-out radius.
A query is known only when it is known in every view (the mean of a middle layer sees the whole text, the last
token of a late layer its ending).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from switch.defaults import SWITCH_DEFAULTS
from switch.errors import SwitchError
from switch.extractor import POOLING

REJECT_METRICS = ("euclidean", "cosine")
NUMERICAL_FLOOR = 1e-3  # per-dimension distance treated as identical (CPU vs GPU float noise)
COSINE_FLOOR = 1e-5  # cosine distance treated as identical
THRESHOLD_RULE = (
    "quantile `reject_quantile` over the distinct retained instructions of their leave-one-out nearest-neighbour "
    "distance (`reject_metric`: euclidean in standardised features, or cosine; at `reject_layer`/`reject_pooling`, "
    "default the routing features'), times (1 + margin), at least float noise; a query whose nearest retained "
    "instruction is farther is rejected; with calibration (cosine only), each retained instruction of a calibrated "
    "task has its own radius: quantile `reject_quantile` of the distances of the task's non-retained instructions "
    "nearest to it, times (1 + margin), and a query within some retained instruction's radius is known; with "
    "further views (`reject_also`, cosine), the same in each, and a query is known only when known in every view"
)

Pairs = Sequence[tuple[float, int]]  # (distance, index of the nearest retained instruction), per calibration row


def parse_view(view: Sequence) -> tuple[int, str]:
    """A rejection view as (layer, pooling), or a one-line error."""
    if not (isinstance(view, (list, tuple)) and len(view) == 2 and isinstance(view[0], int)
            and not isinstance(view[0], bool) and view[1] in POOLING):
        raise SwitchError(f"a rejection view is [layer, pooling] with pooling {' or '.join(POOLING)}, got {view!r}")
    return int(view[0]), view[1]


@dataclass
class RejectionView:
    """Where one view reads its features, and what it learned there."""

    layer: int
    pooling: str
    bank: torch.Tensor | None = None  # the distinct retained instructions, in this view's rejection space
    threshold: float | None = None  # the leave-one-out radius (None: fewer than two distinct instructions)
    radii: torch.Tensor | None = None  # one radius per bank row when calibrated; None: `threshold` for every row
    mean: torch.Tensor | None = None  # the standardisation (euclidean only)
    std: torch.Tensor | None = None

    @property
    def place(self) -> tuple[int, str]:
        return self.layer, self.pooling


class Rejection:
    """The rejection views (view 0 first) and the rule they share."""

    def __init__(self, views: Sequence[Sequence], metric: str = SWITCH_DEFAULTS.reject_metric,
                 quantile: float = SWITCH_DEFAULTS.reject_quantile, margin: float = SWITCH_DEFAULTS.reject_margin):
        if metric not in REJECT_METRICS:
            raise SwitchError(f"reject_metric must be one of {', '.join(REJECT_METRICS)}, got {metric!r}")
        places = [parse_view(view) for view in views]
        if not places:
            raise SwitchError("rejection needs at least one view")
        if len(places) > 1 and metric != "cosine":
            raise SwitchError("further rejection views (reject_also) need reject_metric 'cosine'")
        self.metric, self.quantile, self.margin = metric, quantile, margin
        self.views = [RejectionView(layer, pooling) for layer, pooling in places]

    @property
    def places(self) -> list[tuple[int, str]]:
        """(layer, pooling) of every view, view 0 first."""
        return [view.place for view in self.views]

    @property
    def fitted(self) -> bool:
        return self.views[0].threshold is not None or self.views[0].radii is not None

    @property
    def calibrated(self) -> bool:
        return self.views[0].radii is not None

    # -- distances -----------------------------------------------------------------------
    def require_cosine(self) -> None:
        if self.metric != "cosine":
            raise SwitchError("calibrated rejection needs reject_metric 'cosine' (standardised euclidean distances "
                              "change as later tasks are added)")

    @staticmethod
    def _unit(features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(features, dim=1)

    def _space(self, view: RejectionView, features: torch.Tensor) -> torch.Tensor:
        """Features as `view` compares them: unit vectors (cosine) or standardised (euclidean)."""
        if self.metric == "cosine":
            return self._unit(features)
        return (features - view.mean) / view.std

    def _distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.metric == "cosine":  # unit vectors
            return (1 - a @ b.T).clamp(min=0)
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")

    def calibration_distances(self, retained: Sequence[torch.Tensor],
                              others: Sequence[torch.Tensor]) -> list[list[tuple[float, int]]]:
        """Per view (features of a task's retained instructions and of some of its other instructions in each):
        each other instruction's cosine distance to its nearest retained one, and that one's index."""
        self.require_cosine()
        found = []
        for bank, query in zip(retained, others):
            nearest = self._distances(self._unit(query), self._unit(bank)).min(1)
            found.append(list(zip(nearest.values.tolist(), nearest.indices.tolist())))
        return found

    # -- fitting -------------------------------------------------------------------------
    def fit(self, features: Sequence[torch.Tensor], distinct: Sequence[int], task_rows: dict[str, list[int]],
            calibration: dict | None = None) -> dict[str, int] | None:
        """Learn every view from the retained instructions' features in it (`features`, one tensor per view, a row
        per retained instruction). `distinct`: the rows that form the banks (repeated instructions say nothing about
        spread); `task_rows`: task -> the bank row of each of its retained instructions, in order (what calibration
        indices count); `calibration`: task -> its pairs per view (one view: its pairs). Returns how many
        calibration instructions each task has (None without calibration)."""
        by_view = self._calibration_by_view(calibration) if calibration else None
        if by_view:
            self.require_cosine()
            unknown = sorted(set(by_view) - set(task_rows))
            if unknown:
                raise SwitchError(f"calibration for tasks the switch is not fitted on: {', '.join(unknown)}")
        for k, (view, found) in enumerate(zip(self.views, features)):
            if self.metric == "euclidean":
                view.mean, view.std = found.mean(0), found.std(0, unbiased=False).clamp(min=1e-6)
            view.bank = self._space(view, found)[list(distinct)]
            view.threshold = self._leave_one_out(view.bank)
            view.radii = (self._instruction_radii({task: views[k] for task, views in by_view.items()}, task_rows,
                                                  len(view.bank), view.threshold) if by_view else None)
        if not by_view:
            return None
        return {task: len(by_view[task][0]) if task in by_view else 0 for task in task_rows}

    def _leave_one_out(self, bank: torch.Tensor) -> float | None:
        """The bank rows' leave-one-out nearest-neighbour distances set the radius."""
        if len(bank) < 2:
            return None
        distances = self._distances(bank, bank)
        distances.fill_diagonal_(float("inf"))
        radius = float(torch.quantile(distances.min(1).values, self.quantile)) * (1 + self.margin)
        floor = COSINE_FLOOR if self.metric == "cosine" else NUMERICAL_FLOOR * bank.shape[1] ** 0.5
        return max(radius, floor)  # never below float noise across devices

    def _calibration_by_view(self, calibration: dict) -> dict[str, list[Pairs]]:
        """task -> one list of (distance, index) pairs per view."""
        if len(self.views) == 1:
            return {task: [pairs or []] for task, pairs in calibration.items()}
        by_view = {}
        for task, views in calibration.items():
            views = list(views or [])
            if len(views) != len(self.views) or not all(
                    isinstance(pairs, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs)
                    for pairs in views):
                raise SwitchError(f"calibration of '{task}': expected one list of (distance, index) pairs per rejection "
                                  f"view ({len(self.views)}), as calibration_distances_by_view gives")
            by_view[task] = views
        return by_view

    def _instruction_radii(self, calibration: dict[str, Pairs], task_rows: dict[str, list[int]], rows: int,
                           threshold: float | None) -> torch.Tensor:
        """A radius per bank row: the quantile of the calibration distances nearest to it × (1 + margin); float noise
        where none are; `threshold` for the rows of tasks without calibration."""
        radii = torch.full((rows,), COSINE_FLOOR if threshold is None else threshold)
        assigned: dict[int, list[float]] = {}
        for task, pairs in calibration.items():
            if not pairs:  # every row of the task was retained: it keeps the leave-one-out radius
                continue
            mine = task_rows[task]
            radii[mine] = COSINE_FLOOR
            for distance, index in pairs:
                if not 0 <= int(index) < len(mine):
                    raise SwitchError(f"calibration of '{task}' names retained instruction {index}, but it has "
                                      f"{len(mine)}")
                assigned.setdefault(mine[int(index)], []).append(float(distance))
        for row, distances in assigned.items():
            radius = float(torch.quantile(torch.tensor(distances), self.quantile)) * (1 + self.margin)
            radii[row] = max(radius, COSINE_FLOOR)
        return radii

    # -- rejecting -----------------------------------------------------------------------
    def rejected(self, features: Sequence[torch.Tensor]) -> list[bool]:
        """Whether each query (its features in every view) is unknown in some view."""
        outside = torch.zeros(len(features[0]), dtype=torch.bool)
        for view, found in zip(self.views, features):
            outside |= self._outside(view, self._space(view, found))
        return outside.tolist()

    def _outside(self, view: RejectionView, queries: torch.Tensor) -> torch.Tensor:
        """Whether each query lies outside every bank row's radius (or the one radius) of `view`."""
        distances = self._distances(queries, view.bank)
        if view.radii is not None:
            return ~(distances <= view.radii[None, :]).any(1)
        if view.threshold is None:
            return torch.zeros(len(queries), dtype=torch.bool)
        return distances.min(1).values > view.threshold

    # -- saved form (switch.safetensors and switch.json, as format 1 has them) ------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """View 0 as reject_bank/reject_radii (and reject_mean/reject_std, euclidean), view k as reject_bank.k and
        reject_radii.k."""
        first, *further = self.views
        tensors = {"reject_bank": first.bank.contiguous()}
        if first.mean is not None:
            tensors.update(reject_mean=first.mean.contiguous(), reject_std=first.std.contiguous())
        if first.radii is not None:
            tensors["reject_radii"] = first.radii.contiguous()
        for k, view in enumerate(further, start=1):
            tensors[f"reject_bank.{k}"] = view.bank.contiguous()
            if view.radii is not None:
                tensors[f"reject_radii.{k}"] = view.radii.contiguous()
        return tensors

    def meta(self) -> dict:
        first, *further = self.views
        return {"threshold": first.threshold, "calibrated": self.calibrated, "threshold_rule": THRESHOLD_RULE,
                "margin": self.margin, "reject_quantile": self.quantile, "reject_layer": first.layer,
                "reject_pooling": first.pooling, "reject_metric": self.metric,
                "reject_also": [list(view.place) for view in further],
                "also_thresholds": [view.threshold for view in further]}

    def load_state(self, meta: dict, tensors: dict[str, torch.Tensor], where: str) -> None:
        """What `tensors()` and `meta()` saved. A switch saved before the rejection view existed rejected in its
        routing space (standardised euclidean): its routing bank, mean and std are view 0's."""
        first, *further = self.views
        first.threshold = meta["threshold"]
        first.bank = tensors.get("reject_bank", tensors["bank"])
        first.radii = tensors.get("reject_radii")  # absent when not calibrated (and before calibration existed)
        if self.metric == "euclidean":
            first.mean, first.std = tensors.get("reject_mean", tensors["mean"]), tensors.get("reject_std", tensors["std"])
        missing = [f"reject_bank.{k}" for k in range(1, len(self.views)) if f"reject_bank.{k}" not in tensors]
        if missing:
            raise SwitchError(f"{where} lacks {', '.join(missing)} (its reject_also lists {len(further)} views)")
        thresholds = list(meta.get("also_thresholds", []))
        for k, view in enumerate(further, start=1):
            view.bank, view.radii = tensors[f"reject_bank.{k}"], tensors.get(f"reject_radii.{k}")
            view.threshold = thresholds[k - 1] if k - 1 < len(thresholds) else None
