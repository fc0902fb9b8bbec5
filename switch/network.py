"""SwitchNetwork: route an instruction to the task whose adapter should serve it.

features = frozen LM's last-token hidden state of the instruction (switch.extractor)
classifier = 2-layer MLP over standardised features (switch.classifier); or, router "nearest", no
             classifier: the task of the nearest retained instruction; or, router "key", no classifier: the task
             whose key (the mean of its retained instructions' standardised features) is most cosine-similar
rejection = (optional, switch.rejection) a query unlike every learned task gets None, and the caller serves it with
            the bare base model; its views are read from the routing forward pass
files = switch.storage
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from switch.classifier import SwitchClassifier, train_classifier
from switch.defaults import SWITCH_DEFAULTS as DEFAULTS
from switch.errors import SwitchError
from switch.extractor import POOLING, FeatureExtractor
from switch.instruction import switch_text
from switch.rejection import Rejection
from switch.storage import WEIGHTS, read_switch, saved_extractor, write_switch

ROUTERS = ("mlp", "nearest", "key")


class SwitchNetwork:
    def __init__(self, extractor: str | FeatureExtractor = DEFAULTS.extractor, hidden: int = DEFAULTS.hidden,
                 layer: int = DEFAULTS.layer, pooling: str = DEFAULTS.pooling, epochs: int = DEFAULTS.epochs,
                 lr: float = DEFAULTS.lr, reject: bool = DEFAULTS.reject, margin: float = DEFAULTS.reject_margin,
                 reject_quantile: float = DEFAULTS.reject_quantile, seed: int = 0, cache_dir: str | None = None,
                 router: str = "mlp", reject_layer: int | None = None, reject_pooling: str | None = None,
                 reject_metric: str = DEFAULTS.reject_metric, reject_also: Sequence[Sequence] = ()):
        """`reject_layer`/`reject_pooling` (None: the routing features') place rejection's view 0, `reject_also`
        its further views ([(layer, pooling), ...], cosine only)."""
        if router not in ROUTERS:
            raise SwitchError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
        if reject_pooling is not None and reject_pooling not in POOLING:
            raise SwitchError(f"unknown reject_pooling '{reject_pooling}' (known: {', '.join(POOLING)})")
        if isinstance(extractor, str):
            extractor = FeatureExtractor(extractor, layer=layer, pooling=pooling, cache_dir=cache_dir, seed=seed)
        self.extractor = extractor
        first = (extractor.layer if reject_layer is None else reject_layer, reject_pooling or extractor.pooling)
        self.rejection = Rejection([first, *reject_also], metric=reject_metric, quantile=reject_quantile, margin=margin)
        self.router, self.reject = router, reject
        self.hidden, self.epochs, self.lr, self.seed = hidden, epochs, lr, seed
        self.labels: list[str] = []
        self.classifier: SwitchClassifier | None = None
        self.mean = self.std = None  # the routing features' standardisation
        self.bank = self.bank_labels = None  # the distinct retained instructions' standardised features, their tasks
        self.fit_info: dict = {}

    # -- views ---------------------------------------------------------------------------
    @property
    def views(self) -> tuple[tuple[int, str], tuple[int, str]]:
        """(layer, pooling) of the routing features and of rejection's view 0."""
        return (self.extractor.layer, self.extractor.pooling), self.rejection.views[0].place

    @property
    def rejection_views(self) -> list[tuple[int, str]]:
        """(layer, pooling) of every rejection view, view 0 first."""
        return self.rejection.places

    @property
    def reject_also(self) -> list[tuple[int, str]]:
        """The further rejection views."""
        return self.rejection.places[1:]

    @property
    def reject_metric(self) -> str:
        return self.rejection.metric

    # -- features ------------------------------------------------------------------------
    @staticmethod
    def _switch_texts(texts: Sequence[str], inputs: Sequence[str] | None) -> list[str]:
        return [switch_text(t, i) for t, i in zip(texts, inputs or [""] * len(texts))]

    def features(self, texts: Sequence[str], inputs: Sequence[str] | None = None) -> torch.Tensor:
        """Routing features of instructions (as the switch reads them)."""
        return self.extractor(self._switch_texts(texts, inputs))

    def _features_at(self, shown: list[str], places: list[tuple[int, str]]) -> list[torch.Tensor]:
        """Features of switch texts at each (layer, pooling) of `places`, from one forward pass."""
        distinct = list(dict.fromkeys(places))
        found = dict(zip(distinct, self.extractor.features_at(shown, distinct)))
        return [found[place] for place in places]

    def _standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    # -- training ------------------------------------------------------------------------
    def calibration_distances(self, retained: Sequence[str], others: Sequence[str],
                              retained_inputs: Sequence[str] | None = None,
                              other_inputs: Sequence[str] | None = None) -> list[tuple[float, int]]:
        """Each of `others` (a task's instructions that were not retained) -> (its cosine distance, at rejection's
        view 0, to the nearest of `retained` (the same task's retained instructions), that one's index in
        `retained`): what `fit(calibration=)` sets the retained instructions' radii from. Needs no fitted switch,
        so it is computed while the task's data is at hand. With further views, `calibration_distances_by_view`."""
        return self.calibration_distances_by_view(retained, others, retained_inputs, other_inputs)[0]

    def calibration_distances_by_view(self, retained: Sequence[str], others: Sequence[str],
                                      retained_inputs: Sequence[str] | None = None,
                                      other_inputs: Sequence[str] | None = None) -> list[list[tuple[float, int]]]:
        """`calibration_distances` in each rejection view (`rejection_views`' order), from one forward pass."""
        self.rejection.require_cosine()
        if not retained:
            raise SwitchError("no retained instructions to measure calibration distances to")
        if not others:
            return [[] for _ in self.rejection.views]
        places = self.rejection.places
        return self.rejection.calibration_distances(
            self._features_at(self._switch_texts(retained, retained_inputs), places),
            self._features_at(self._switch_texts(others, other_inputs), places))

    def fit(self, texts: Sequence[str], labels: Sequence[str], inputs: Sequence[str] | None = None,
            calibration: dict[str, Sequence] | None = None) -> SwitchNetwork:
        """Fit on the retained instructions; `calibration` (task -> `calibration_distances` of that task, whose
        indices count that task's rows of `texts` in order) gives those tasks' retained instructions radii of their
        own. With further rejection views, each task's entry is one such list per view (as
        `calibration_distances_by_view` gives)."""
        if len(texts) != len(labels):
            raise SwitchError(f"{len(texts)} texts but {len(labels)} labels")
        if not texts:
            raise SwitchError("no retained examples to fit the switch on")
        labels = list(labels)
        self.labels = sorted(set(labels), key=labels.index)
        shown = self._switch_texts(texts, inputs)
        features, *rejection_features = self._features_at(shown, [self.views[0], *self.rejection.places])
        self.mean = features.mean(0)
        self.std = features.std(0, unbiased=False).clamp(min=1e-6)
        z = self._standardise(features)
        target = torch.tensor([self.labels.index(label) for label in labels])
        self.classifier = SwitchClassifier(z.shape[1], len(self.labels), self.hidden, seed=self.seed)
        loss = 0.0
        if len(self.labels) > 1 and self.router == "mlp":
            loss = train_classifier(self.classifier, z, target, epochs=self.epochs, lr=self.lr, seed=self.seed)
        distinct = sorted({text: n for n, text in enumerate(shown)}.values())
        bank_row = {shown[n]: b for b, n in enumerate(distinct)}
        self.bank = z[distinct]  # repeated instructions say nothing about spread: calibrate on distinct ones
        self.bank_labels = target[distinct]
        task_rows = {task: [bank_row[text] for text, label in zip(shown, labels) if label == task]
                     for task in self.labels}
        counts = self.rejection.fit(rejection_features, distinct, task_rows, calibration)
        train_acc = sum(p == t for (p, _), t in zip(self.route(features), labels)) / len(labels)
        self.fit_info = {"examples": len(texts), "per_class": {c: labels.count(c) for c in self.labels},
                         "final_loss": loss, "train_accuracy": train_acc}
        if counts is not None:
            self.fit_info["calibration_counts"] = counts
        return self

    @property
    def keys(self) -> torch.Tensor:
        """Per task, the mean of its distinct retained instructions' standardised features, each scaled to unit length
        first (router "key"): the key EProj's pull loss, sum of 1 - cos(query, key) over the task's queries, converges
        to (its minimiser is the direction of that mean)."""
        unit = torch.nn.functional.normalize(self.bank, dim=1)
        return torch.stack([unit[self.bank_labels == k].mean(0) for k in range(len(self.labels))])

    # -- routing -------------------------------------------------------------------------
    def _scores(self, z: torch.Tensor) -> torch.Tensor:
        """Per-task probabilities: the MLP's, (router "nearest") a softmax over minus each task's nearest retained
        instruction's distance, or (router "key") a softmax over the cosine similarity to each task's key."""
        if self.router == "mlp":
            return torch.softmax(self.classifier(z), dim=1)
        if self.router == "key":
            unit = torch.nn.functional.normalize
            return torch.softmax(unit(z, dim=1) @ unit(self.keys, dim=1).T, dim=1)
        distances = torch.cdist(z, self.bank, compute_mode="donot_use_mm_for_euclid_dist")
        per_task = torch.stack([distances[:, self.bank_labels == k].min(1).values if (self.bank_labels == k).any()
                                else torch.full((len(z),), float("inf")) for k in range(len(self.labels))], 1)
        return torch.softmax(-per_task, dim=1)

    @property
    def rejecting(self) -> bool:
        """Whether routes reject: asked for, fitted, and more than one task to tell apart."""
        return self.reject and self.rejection.fitted and len(self.labels) > 1

    def route(self, features: torch.Tensor,
              rejection_features: Sequence[torch.Tensor] | None = None) -> list[tuple[str | None, float]]:
        """(task, confidence) for routing features; with `rejection_features` (the queries' features in every
        rejection view), None for the queries rejection finds unknown."""
        if len(self.labels) == 1:
            return [(self.labels[0], 1.0)] * len(features)
        with torch.no_grad():
            probs = self._scores(self._standardise(features))
        confidence, index = probs.max(1)
        routes = [(self.labels[i], float(c)) for i, c in zip(index.tolist(), confidence)]
        if rejection_features is None:
            return routes
        return [(None if out else label, c) for (label, c), out in zip(routes, self.rejection.rejected(rejection_features))]

    def predict(self, texts: Sequence[str], inputs: Sequence[str] | None = None) -> list[tuple[str | None, float]]:
        """(task label, or None when the query is unlike every learned task; confidence) per text."""
        if self.classifier is None:
            raise SwitchError("the switch is not fitted")
        if not texts:
            return []
        rejecting = self.rejecting
        places = [self.views[0], *(self.rejection.places if rejecting else [])]
        features, *rejection_features = self._features_at(self._switch_texts(texts, inputs), places)
        return self.route(features, rejection_features if rejecting else None)

    @property
    def parameter_count(self) -> int:
        if self.router != "mlp":
            return 0  # no trained parameters: the retained instructions' features route
        return self.classifier.parameter_count if self.classifier is not None else 0

    # -- persistence (switch.storage) ----------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Weights in safetensors and a JSON description with checksums; written atomically."""
        if self.classifier is None:
            raise SwitchError("the switch is not fitted")
        tensors = {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}
        tensors.update(mean=self.mean, std=self.std, bank=self.bank, bank_labels=self.bank_labels,
                       **self.rejection.tensors())
        meta = {"layer": self.extractor.layer, "pooling": self.extractor.pooling, "labels": self.labels,
                **self.rejection.meta(), "reject": self.reject, "router": self.router,
                "feature_dim": int(self.mean.shape[0]), "hidden": self.hidden,
                "parameter_count": self.parameter_count, "seed": self.seed, "fit": self.fit_info}
        write_switch(directory, tensors, meta, self.extractor)

    @classmethod
    def load(cls, directory: str | Path, labels: Sequence[str] | None = None,
             extractor: FeatureExtractor | None = None, cache_dir: str | None = None,
             verify_checksums: bool = True) -> SwitchNetwork:
        """Load a saved switch, verifying checksums (unless the caller has just verified every file of it, e.g.
        against a run's manifest); `labels` (if given) must match the saved ones. The files switch.json names
        must lie inside `directory`."""
        directory = Path(directory)
        meta, tensors = read_switch(directory, verify_checksums)
        if labels is not None and list(labels) != meta["labels"]:
            raise SwitchError(f"{directory}: switch labels {meta['labels']} do not match the expected {list(labels)}")
        if extractor is None:
            extractor = saved_extractor(directory, meta, cache_dir)
        if extractor.feature_dim != meta["feature_dim"]:
            raise SwitchError(f"{directory}: extractor gives {extractor.feature_dim}-d features, "
                              f"the switch expects {meta['feature_dim']}")
        # the defaults of keys a switch saved by older code may lack are what that code did
        switch = cls(extractor, hidden=meta["hidden"], reject=meta.get("reject", True),
                     margin=meta.get("margin", 0.1), reject_quantile=meta.get("reject_quantile", 0.95),
                     seed=meta.get("seed", 0), router=meta.get("router", "mlp"), reject_layer=meta.get("reject_layer"),
                     reject_pooling=meta.get("reject_pooling"), reject_metric=meta.get("reject_metric", "euclidean"),
                     reject_also=meta.get("reject_also", []))
        switch.labels = meta["labels"]
        switch.mean, switch.std, switch.bank = tensors["mean"], tensors["std"], tensors["bank"]
        switch.bank_labels = tensors.get("bank_labels")
        switch.rejection.load_state(meta, tensors, f"{directory}: {WEIGHTS}")
        switch.classifier = SwitchClassifier(meta["feature_dim"], len(switch.labels), meta["hidden"], seed=switch.seed)
        switch.classifier.load_state_dict({k[len("classifier."):]: v for k, v in tensors.items()
                                           if k.startswith("classifier.")})
        switch.classifier.eval()
        switch.fit_info = meta.get("fit", {})
        return switch
