"""SwitchNetwork: route an instruction to the task whose adapter should serve it.

features = frozen LM's last-token hidden state of the instruction (switch.extractor)
classifier = 2-layer MLP over standardised features (switch.classifier); or, router "nearest", no
             classifier: the task of the nearest retained instruction; or, router "key", no classifier: the task
             whose key (the mean of its retained instructions' standardised features) is most cosine-similar
rejection = a query farther from every retained example than the retained examples are from
            each other (the `quantile` of their leave-one-out nearest-neighbour distances, times
            1 + margin) is unlike every learned task: it gets None and the caller serves it with the
            bare base model. Distances are euclidean in standardised features (default) or cosine, at
            the routing features' layer and pooling (default) or at a view of their own
            (`reject_layer`, `reject_pooling`), read from the same forward pass.
            Calibrated rejection (cosine only): each retained instruction gets a radius of its own from
            the task's instructions that were not retained and lie nearest to it (`calibration_distances`,
            computed while the task's data is at hand; `fit(calibration=)`): the `quantile` of their
            distances to it times 1 + margin (float noise when none lie nearest to it). A query is known
            when it lies within some retained instruction's radius; tasks without calibration keep the
            rule above. Further views (`reject_also`, cosine only: [(layer, pooling), ...], from the same
            forward pass) each get their own radii the same way, and a query is known only when it is known
            in every view (the mean of a middle layer sees the whole text, the last token of a late layer
            its ending).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from switch.classifier import SwitchClassifier, train_classifier
from switch.errors import SwitchError
from switch.extractor import POOLING, TINY_EXTRACTOR, FeatureExtractor
from switch.instruction import switch_text

FORMAT_VERSION = 1
NUMERICAL_FLOOR = 1e-3  # per-dimension distance treated as identical (CPU vs GPU float noise)
COSINE_FLOOR = 1e-5  # cosine distance treated as identical
REJECT_METRICS = ("euclidean", "cosine")
ROUTERS = ("mlp", "nearest", "key")
WEIGHTS, META, EXTRACTOR_DIR = "switch.safetensors", "switch.json", "extractor"
THRESHOLD_RULE = (
    "quantile `reject_quantile` over the distinct retained instructions of their leave-one-out nearest-neighbour "
    "distance (`reject_metric`: euclidean in standardised features, or cosine; at `reject_layer`/`reject_pooling`, "
    "default the routing features'), times (1 + margin), at least float noise; a query whose nearest retained "
    "instruction is farther is rejected; with calibration (cosine only), each retained instruction of a calibrated "
    "task has its own radius: quantile `reject_quantile` of the distances of the task's non-retained instructions "
    "nearest to it, times (1 + margin), and a query within some retained instruction's radius is known; with "
    "further views (`reject_also`, cosine), the same in each, and a query is known only when known in every view"
)


def _view(view: Sequence) -> tuple[int, str]:
    """A rejection view as (layer, pooling), or a one-line error."""
    if not (isinstance(view, (list, tuple)) and len(view) == 2 and isinstance(view[0], int)
            and not isinstance(view[0], bool) and view[1] in POOLING):
        raise SwitchError(f"a rejection view is [layer, pooling] with pooling {' or '.join(POOLING)}, got {view!r}")
    return int(view[0]), view[1]


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inside(directory: Path, name, field: str) -> Path:
    """`directory / name`, refused unless it (symlinks followed) stays inside `directory`."""
    root = directory.resolve()
    path = (root / str(name)).resolve()
    if root not in path.parents:
        raise SwitchError(f"{directory / META}: {field} '{name}' escapes the switch directory")
    return path


class SwitchNetwork:
    def __init__(self, extractor: str | FeatureExtractor = "facebook/opt-125m", hidden: int = 200,
                 layer: int = -1, pooling: str = "last", epochs: int = 300, lr: float = 1e-3,
                 reject: bool = True, margin: float = 0.1, reject_quantile: float = 0.95, seed: int = 0,
                 cache_dir: str | None = None, router: str = "mlp", reject_layer: int | None = None,
                 reject_pooling: str | None = None, reject_metric: str = "euclidean",
                 reject_also: Sequence[Sequence] = ()):
        if router not in ROUTERS:
            raise SwitchError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
        if reject_metric not in REJECT_METRICS:
            raise SwitchError(f"reject_metric must be one of {', '.join(REJECT_METRICS)}, got {reject_metric!r}")
        if reject_pooling is not None and reject_pooling not in POOLING:
            raise SwitchError(f"unknown reject_pooling '{reject_pooling}' (known: {', '.join(POOLING)})")
        self.reject_also = [_view(view) for view in reject_also]
        if self.reject_also and reject_metric != "cosine":
            raise SwitchError("further rejection views (reject_also) need reject_metric 'cosine'")
        self.router = router
        if isinstance(extractor, str):
            extractor = FeatureExtractor(extractor, layer=layer, pooling=pooling, cache_dir=cache_dir, seed=seed)
        self.extractor = extractor
        self.hidden, self.epochs, self.lr, self.seed = hidden, epochs, lr, seed
        self.reject, self.margin, self.reject_quantile = reject, margin, reject_quantile
        self.reject_layer, self.reject_pooling, self.reject_metric = reject_layer, reject_pooling, reject_metric
        self.labels: list[str] = []
        self.classifier: SwitchClassifier | None = None
        self.mean = self.std = self.bank = self.bank_labels = None
        self.reject_mean = self.reject_std = self.reject_bank = None  # the rejection view's standardisation and bank
        self.threshold: float | None = None
        self.radii: torch.Tensor | None = None  # per distinct retained instruction, when calibrated; None: `threshold`
        # the same for each view of `reject_also`, in order
        self.also_banks: list[torch.Tensor] = []
        self.also_thresholds: list[float | None] = []
        self.also_radii: list[torch.Tensor | None] = []
        self.fit_info: dict = {}

    # -- training ------------------------------------------------------------------------
    @staticmethod
    def _switch_texts(texts: Sequence[str], inputs: Sequence[str] | None) -> list[str]:
        return [switch_text(t, i) for t, i in zip(texts, inputs or [""] * len(texts))]

    def features(self, texts: Sequence[str], inputs: Sequence[str] | None = None) -> torch.Tensor:
        return self.extractor(self._switch_texts(texts, inputs))

    @property
    def views(self) -> tuple[tuple[int, str], tuple[int, str]]:
        """(layer, pooling) of the routing features and of the rejection features."""
        routing = (self.extractor.layer, self.extractor.pooling)
        rejecting = (routing[0] if self.reject_layer is None else self.reject_layer, self.reject_pooling or routing[1])
        return routing, rejecting

    @property
    def rejection_views(self) -> list[tuple[int, str]]:
        """(layer, pooling) of every rejection view: the rejection features', then `reject_also`'s."""
        return [self.views[1], *self.reject_also]

    def _view_features(self, shown: list[str], views: list[tuple[int, str]]) -> list[torch.Tensor]:
        """Features of switch texts at each of `views`, from one forward pass."""
        distinct = list(dict.fromkeys(views))
        found = dict(zip(distinct, self.extractor.features_at(shown, distinct)))
        return [found[view] for view in views]

    def _both_features(self, shown: list[str], rejection: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Routing features of switch texts, and the features of every rejection view (none when not asked for),
        from one forward pass."""
        if not rejection:
            return self.extractor(shown), []
        routing, *rejecting = self._view_features(shown, [self.views[0], *self.rejection_views])
        return routing, rejecting

    def _require_cosine(self) -> None:
        if self.reject_metric != "cosine":
            raise SwitchError("calibrated rejection needs reject_metric 'cosine' (standardised euclidean distances "
                              "change as later tasks are added)")

    def calibration_distances(self, retained: Sequence[str], others: Sequence[str],
                              retained_inputs: Sequence[str] | None = None,
                              other_inputs: Sequence[str] | None = None) -> list[tuple[float, int]]:
        """Each of `others` (a task's instructions that were not retained) -> (its cosine distance, at the rejection
        view, to the nearest of `retained` (the same task's retained instructions), that one's index in `retained`):
        what `fit(calibration=)` sets the retained instructions' radii from. Needs no fitted switch, so it is
        computed while the task's data is at hand. With `reject_also`, `calibration_distances_by_view`."""
        return self.calibration_distances_by_view(retained, others, retained_inputs, other_inputs)[0]

    def calibration_distances_by_view(self, retained: Sequence[str], others: Sequence[str],
                                      retained_inputs: Sequence[str] | None = None,
                                      other_inputs: Sequence[str] | None = None) -> list[list[tuple[float, int]]]:
        """`calibration_distances` in each rejection view (`rejection_views`' order), from one forward pass."""
        self._require_cosine()
        if not retained:
            raise SwitchError("no retained instructions to measure calibration distances to")
        if not others:
            return [[] for _ in self.rejection_views]
        banks = self._view_features(self._switch_texts(retained, retained_inputs), self.rejection_views)
        queries = self._view_features(self._switch_texts(others, other_inputs), self.rejection_views)
        found = []
        for bank, query in zip(banks, queries):
            nearest = self._distances(self._unit(query), self._unit(bank)).min(1)
            found.append(list(zip(nearest.values.tolist(), nearest.indices.tolist())))
        return found

    def _standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    @staticmethod
    def _unit(features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(features, dim=1)

    def _rejection_space(self, features: torch.Tensor) -> torch.Tensor:
        if self.reject_metric == "cosine":
            return self._unit(features)
        return (features - self.reject_mean) / self.reject_std

    def _distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.reject_metric == "cosine":  # unit vectors
            return (1 - a @ b.T).clamp(min=0)
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")

    def fit(self, texts: Sequence[str], labels: Sequence[str], inputs: Sequence[str] | None = None,
            calibration: dict[str, Sequence[tuple[float, int]]] | None = None) -> SwitchNetwork:
        """Fit on the retained instructions; `calibration` (task -> `calibration_distances` of that task, whose
        indices count that task's rows of `texts` in order) gives those tasks' retained instructions radii of their
        own. With `reject_also`, each task's entry is one such list per rejection view (as
        `calibration_distances_by_view` gives)."""
        if len(texts) != len(labels):
            raise SwitchError(f"{len(texts)} texts but {len(labels)} labels")
        if not texts:
            raise SwitchError("no retained examples to fit the switch on")
        self.labels = sorted(set(labels), key=list(labels).index)
        shown = self._switch_texts(texts, inputs)
        features, (reject_features, *also_features) = self._both_features(shown, rejection=True)
        self.mean = features.mean(0)
        self.std = features.std(0, unbiased=False).clamp(min=1e-6)
        self.reject_mean = reject_features.mean(0)
        self.reject_std = reject_features.std(0, unbiased=False).clamp(min=1e-6)
        z = self._standardise(features)
        target = torch.tensor([self.labels.index(label) for label in labels])
        self.classifier = SwitchClassifier(z.shape[1], len(self.labels), self.hidden, seed=self.seed)
        loss = 0.0
        if len(self.labels) > 1 and self.router == "mlp":
            loss = train_classifier(self.classifier, z, target, epochs=self.epochs, lr=self.lr, seed=self.seed)
        distinct = sorted({text: n for n, text in enumerate(shown)}.values())
        self.bank = z[distinct]  # repeated instructions say nothing about spread: calibrate on distinct ones
        self.bank_labels = target[distinct]
        self.reject_bank = self._rejection_space(reject_features)[distinct]
        self.threshold = self._calibrate(self.reject_bank)
        self.also_banks = [self._unit(f)[distinct] for f in also_features]
        self.also_thresholds = [self._calibrate(bank) for bank in self.also_banks]
        by_view = self._calibration_by_view(calibration) if calibration else None
        thresholds = [self.threshold, *self.also_thresholds]
        radii = [self._instruction_radii({task: views[k] for task, views in by_view.items()}, shown, labels, distinct,
                                         thresholds[k]) if by_view else None for k in range(len(thresholds))]
        self.radii, self.also_radii = radii[0], radii[1:]
        train_acc = sum(p == t for (p, _), t in zip(self._predict_z(z, reject=False), labels)) / len(labels)
        self.fit_info = {"examples": len(texts), "per_class": {c: list(labels).count(c) for c in self.labels},
                         "final_loss": loss, "train_accuracy": train_acc}
        if calibration:
            self.fit_info["calibration_counts"] = {c: len(by_view[c][0]) if c in by_view else 0 for c in self.labels}
        return self

    @property
    def keys(self) -> torch.Tensor:
        """Per task, the mean of its distinct retained instructions' standardised features (router "key")."""
        return torch.stack([self.bank[self.bank_labels == k].mean(0) for k in range(len(self.labels))])

    def _calibrate(self, z: torch.Tensor) -> float | None:
        """Leave-one-out nearest-neighbour distances of the retained examples set the rejection radius."""
        if len(z) < 2:
            return None
        distances = self._distances(z, z)
        distances.fill_diagonal_(float("inf"))
        radius = float(torch.quantile(distances.min(1).values, self.reject_quantile)) * (1 + self.margin)
        floor = COSINE_FLOOR if self.reject_metric == "cosine" else NUMERICAL_FLOOR * z.shape[1] ** 0.5
        return max(radius, floor)  # never below float noise across devices

    def _calibration_by_view(self, calibration: dict) -> dict[str, list[Sequence[tuple[float, int]]]]:
        """task -> one list of (distance, index) pairs per rejection view."""
        if len(self.rejection_views) == 1:
            return {task: [pairs or []] for task, pairs in calibration.items()}
        by_view = {}
        for task, views in calibration.items():
            views = list(views or [])
            if len(views) != len(self.rejection_views) or not all(
                    isinstance(pairs, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs)
                    for pairs in views):
                raise SwitchError(f"calibration of '{task}': expected one list of (distance, index) pairs per rejection "
                                  f"view ({len(self.rejection_views)}), as calibration_distances_by_view gives")
            by_view[task] = views
        return by_view

    def _instruction_radii(self, calibration: dict[str, Sequence[tuple[float, int]]], shown: list[str],
                           labels: Sequence[str], distinct: list[int], threshold: float | None) -> torch.Tensor:
        """A radius per distinct retained instruction: the quantile of the calibration distances nearest to it
        x (1 + margin); float noise where none are; `threshold` for the rows of tasks without calibration."""
        unknown = sorted(set(calibration) - set(self.labels))
        if unknown:
            raise SwitchError(f"calibration for tasks the switch is not fitted on: {', '.join(unknown)}")
        self._require_cosine()
        bank_row = {shown[n]: b for b, n in enumerate(distinct)}
        radii = torch.full((len(distinct),), COSINE_FLOOR if threshold is None else threshold)
        assigned: dict[int, list[float]] = {}
        for label, pairs in calibration.items():
            rows = [n for n, task in enumerate(labels) if task == label]
            if not pairs:  # every row of the task was retained: it keeps the leave-one-out radius
                continue
            for n in rows:
                radii[bank_row[shown[n]]] = COSINE_FLOOR
            for distance, index in pairs:
                if not 0 <= int(index) < len(rows):
                    raise SwitchError(f"calibration of '{label}' names retained instruction {index}, but it has "
                                      f"{len(rows)}")
                assigned.setdefault(bank_row[shown[rows[int(index)]]], []).append(float(distance))
        for b, distances in assigned.items():
            radius = float(torch.quantile(torch.tensor(distances), self.reject_quantile)) * (1 + self.margin)
            radii[b] = max(radius, COSINE_FLOOR)
        return radii

    def _outside(self, rz: torch.Tensor, bank: torch.Tensor, threshold: float | None,
                 radii: torch.Tensor | None) -> torch.Tensor:
        """Whether each query (in one view's rejection space) lies outside every retained instruction's radius (or
        the one radius)."""
        distances = self._distances(rz, bank)
        if radii is not None:
            return ~(distances <= radii[None, :]).any(1)
        if threshold is None:
            return torch.zeros(len(rz), dtype=torch.bool)
        return distances.min(1).values > threshold

    def _rejected(self, spaces: list[torch.Tensor]) -> list[bool]:
        """Whether each query is unknown in some rejection view (`spaces`: the queries in each view's space)."""
        outside = self._outside(spaces[0], self.reject_bank, self.threshold, self.radii)
        for rz, bank, threshold, radii in zip(spaces[1:], self.also_banks, self.also_thresholds, self.also_radii):
            outside |= self._outside(rz, bank, threshold, radii)
        return outside.tolist()

    # -- routing -------------------------------------------------------------------------
    def _scores(self, z: torch.Tensor) -> torch.Tensor:
        """Per-task probabilities: the MLP's, (router "nearest") a softmax over minus each task's nearest retained
        instruction's distance, or (router "key") a softmax over the cosine similarity to each task's key."""
        if self.router == "mlp":
            return torch.softmax(self.classifier(z), dim=1)
        if self.router == "key":
            return torch.softmax(self._unit(z) @ self._unit(self.keys).T, dim=1)
        distances = torch.cdist(z, self.bank, compute_mode="donot_use_mm_for_euclid_dist")
        per_task = torch.stack([distances[:, self.bank_labels == k].min(1).values if (self.bank_labels == k).any()
                                else torch.full((len(z),), float("inf")) for k in range(len(self.labels))], 1)
        return torch.softmax(-per_task, dim=1)

    def _predict_z(self, z: torch.Tensor, reject: bool,
                   rz: list[torch.Tensor] | None = None) -> list[tuple[str | None, float]]:
        """Routes for standardised routing features `z`; rejection reads `rz` (the queries in each rejection view's
        space; default `z`, which it is when the one rejection view and metric are the routing ones)."""
        if len(self.labels) == 1:
            return [(self.labels[0], 1.0)] * len(z)
        with torch.no_grad():
            probs = self._scores(z)
        confidence, index = probs.max(1)
        results = [(self.labels[i], float(c)) for i, c in zip(index.tolist(), confidence)]
        if reject and self._rejecting:
            results = [(None if out else label, c) for (label, c), out in zip(results, self._rejected([z] if rz is None else rz))]
        return results

    @property
    def _rejecting(self) -> bool:
        return self.reject and (self.threshold is not None or self.radii is not None) and len(self.labels) > 1

    def predict(self, texts: Sequence[str], inputs: Sequence[str] | None = None) -> list[tuple[str | None, float]]:
        """(task label, or None when the query is unlike every learned task; confidence) per text."""
        if self.classifier is None:
            raise SwitchError("the switch is not fitted")
        if not texts:
            return []
        rejecting = self._rejecting
        features, reject_features = self._both_features(self._switch_texts(texts, inputs), rejection=rejecting)
        rz = [self._rejection_space(reject_features[0]), *map(self._unit, reject_features[1:])] if rejecting else None
        return self._predict_z(self._standardise(features), reject=True, rz=rz)

    @property
    def parameter_count(self) -> int:
        if self.router != "mlp":
            return 0  # no trained parameters: the retained instructions' features route
        return self.classifier.parameter_count if self.classifier is not None else 0

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Weights in safetensors and a JSON description with checksums; written atomically."""
        directory = Path(directory)
        if self.classifier is None:
            raise SwitchError("the switch is not fitted")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        try:
            tensors = {f"classifier.{k}": v.contiguous() for k, v in self.classifier.state_dict().items()}
            tensors.update(mean=self.mean, std=self.std, bank=self.bank.contiguous(),
                           bank_labels=self.bank_labels.contiguous(), reject_mean=self.reject_mean,
                           reject_std=self.reject_std, reject_bank=self.reject_bank.contiguous())
            if self.radii is not None:
                tensors["reject_radii"] = self.radii.contiguous()
            for k, (bank, radii) in enumerate(zip(self.also_banks, self.also_radii), start=1):
                tensors[f"reject_bank.{k}"] = bank.contiguous()
                if radii is not None:
                    tensors[f"reject_radii.{k}"] = radii.contiguous()
            bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
            if bad:  # never a switch that routes on NaN
                raise SwitchError(f"refusing to save the switch {directory}: {len(bad)} tensor(s) hold NaN or infinity "
                                  f"(first: {bad[0]}); lower switch.lr")
            save_file(tensors, str(tmp / WEIGHTS))
            extractor_path = None
            if self.extractor.model_id == TINY_EXTRACTOR:
                self.extractor.save_model(tmp / EXTRACTOR_DIR)
                extractor_path = EXTRACTOR_DIR
            files = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
            meta = {
                "format_version": FORMAT_VERSION,
                "extractor": self.extractor.model_id,
                "extractor_path": extractor_path,
                "layer": self.extractor.layer,
                "pooling": self.extractor.pooling,
                "labels": self.labels,
                "threshold": self.threshold,
                "calibrated": self.radii is not None,
                "threshold_rule": THRESHOLD_RULE,
                "margin": self.margin,
                "reject_quantile": self.reject_quantile,
                "reject": self.reject,
                "reject_layer": self.reject_layer,
                "reject_pooling": self.reject_pooling,
                "reject_metric": self.reject_metric,
                "reject_also": [list(view) for view in self.reject_also],
                "also_thresholds": self.also_thresholds,
                "router": self.router,
                "feature_dim": int(self.mean.shape[0]),
                "hidden": self.hidden,
                "parameter_count": self.parameter_count,
                "seed": self.seed,
                "fit": self.fit_info,
                "checksums": {str(p.relative_to(tmp)): _sha256(p) for p in files},
            }
            (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, directory: str | Path, labels: Sequence[str] | None = None,
             extractor: FeatureExtractor | None = None, cache_dir: str | None = None,
             verify_checksums: bool = True) -> SwitchNetwork:
        """Load a saved switch, verifying checksums (unless the caller has just verified every file of it, e.g.
        against a run's manifest); `labels` (if given) must match the saved ones. The files switch.json names
        must lie inside `directory`."""
        directory = Path(directory)
        meta_path = directory / META
        if not meta_path.is_file():
            raise SwitchError(f"{directory}: not a switch directory (no {META})")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SwitchError(f"{meta_path}: line {err.lineno}: malformed JSON ({err.msg})") from None
        for name, digest in meta.get("checksums", {}).items():
            path = _inside(directory, name, "a checksummed file")
            if not path.is_file():
                raise SwitchError(f"{directory}: missing file {name}")
            if verify_checksums and _sha256(path) != digest:
                raise SwitchError(f"{directory}: checksum mismatch for {name} (file changed since it was saved)")
        if WEIGHTS not in meta.get("checksums", {}):
            raise SwitchError(f"{directory}: {META} lists no checksum for {WEIGHTS}")
        if labels is not None and list(labels) != meta["labels"]:
            raise SwitchError(f"{directory}: switch labels {meta['labels']} do not match the expected {list(labels)}")
        if extractor is None:
            if meta.get("extractor_path"):
                from transformers import AutoModel, AutoTokenizer

                path = _inside(directory, meta["extractor_path"], "extractor_path")
                extractor = FeatureExtractor.from_model(
                    AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), meta["extractor"],
                    layer=meta["layer"], pooling=meta["pooling"], cache_dir=cache_dir, seed=meta.get("seed", 0))
            else:
                extractor = FeatureExtractor(meta["extractor"], layer=meta["layer"], pooling=meta["pooling"],
                                             cache_dir=cache_dir)
        if extractor.feature_dim != meta["feature_dim"]:
            raise SwitchError(f"{directory}: extractor gives {extractor.feature_dim}-d features, "
                              f"the switch expects {meta['feature_dim']}")
        switch = cls(extractor, hidden=meta["hidden"], reject=meta.get("reject", True),
                     margin=meta.get("margin", 0.1), reject_quantile=meta.get("reject_quantile", 0.95),
                     seed=meta.get("seed", 0), router=meta.get("router", "mlp"), reject_layer=meta.get("reject_layer"),
                     reject_pooling=meta.get("reject_pooling"), reject_metric=meta.get("reject_metric", "euclidean"),
                     reject_also=meta.get("reject_also", []))
        tensors = load_file(str(directory / WEIGHTS))
        switch.bank_labels = tensors.get("bank_labels")
        switch.labels, switch.threshold = meta["labels"], meta["threshold"]
        switch.radii = tensors.get("reject_radii")  # absent when not calibrated (and before calibration existed)
        switch.mean, switch.std, switch.bank = tensors["mean"], tensors["std"], tensors["bank"]
        # switches saved before the rejection view existed rejected in their routing space
        switch.reject_mean, switch.reject_std = tensors.get("reject_mean", switch.mean), tensors.get("reject_std", switch.std)
        switch.reject_bank = tensors.get("reject_bank", switch.bank)
        views = range(1, len(switch.reject_also) + 1)
        missing = [f"reject_bank.{k}" for k in views if f"reject_bank.{k}" not in tensors]
        if missing:
            raise SwitchError(f"{directory}: {WEIGHTS} lacks {', '.join(missing)} (its reject_also lists "
                              f"{len(switch.reject_also)} views)")
        switch.also_banks = [tensors[f"reject_bank.{k}"] for k in views]
        switch.also_radii = [tensors.get(f"reject_radii.{k}") for k in views]
        switch.also_thresholds = list(meta.get("also_thresholds", []))
        switch.classifier = SwitchClassifier(meta["feature_dim"], len(switch.labels), meta["hidden"], seed=switch.seed)
        switch.classifier.load_state_dict({k[len("classifier."):]: v for k, v in tensors.items()
                                           if k.startswith("classifier.")})
        switch.classifier.eval()
        switch.fit_info = meta.get("fit", {})
        return switch
