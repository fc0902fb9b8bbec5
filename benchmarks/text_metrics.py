"""Text-track metrics from the reference implementations.

* ROUGE-1 F: Google's `rouge-score` (stemming on, as commonly reported).
* BERTScore F1: the `bert-score` package, default model `microsoft/deberta-large-mnli` (the
  SwitchCIT paper's choice); any local path or Hub id works.
* SARI (Xu et al. 2016): no maintained offline package exists (torchmetrics has none; `evaluate`
  fetches its script from the Hub and runs it, which this toolkit never does: code from the Hub is
  not executed to score a run). This module's pinned port of the reference computation (itself from
  tensor2tensor, as `evaluate`'s): n-grams 1-4 over sacrebleu's 13a tokenisation, lower-cased; keep
  F1, deletion precision, addition F1; sentence scores averaged, times 100.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


class MetricUnavailable(RuntimeError):
    """A metric that cannot run here (missing package or unreachable model); never replaced by another."""


def rouge1(predictions: Sequence[str], references: Sequence[str | Sequence[str]], stemmer: bool = True) -> list[float]:
    """Per-sample ROUGE-1 F-measure (best over references)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=stemmer)
    scores = []
    for prediction, refs in zip(predictions, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        scores.append(max(scorer.score(ref, prediction)["rouge1"].fmeasure for ref in refs))
    return scores


def bertscore_f1(predictions: Sequence[str], references: Sequence[str | Sequence[str]],
                 model_type: str = "microsoft/deberta-large-mnli", num_layers: int | None = None, batch_size: int = 32,
                 device: str | None = None) -> list[float]:
    """Per-sample BERTScore F1 (no idf, no baseline rescaling); with several references per sample,
    bert-score's own multi-reference mode (the best over the references)."""
    if any(not isinstance(r, str) for r in references):
        references = [[r] if isinstance(r, str) else list(r) for r in references]
    try:
        from bert_score import score
    except ImportError as err:
        raise MetricUnavailable("BERTScore needs the bert-score package: pip install 'llava-cit[bertscore]'") from err
    try:
        _, _, f1 = score(list(predictions), list(references), model_type=model_type, num_layers=num_layers,
                         batch_size=batch_size, device=device, verbose=False)
    except OSError as err:
        raise MetricUnavailable(f"BERTScore cannot load '{model_type}': {str(err).splitlines()[0][:160]}") from None
    return [float(v) for v in f1]


def check_bertscore(model_type: str = "microsoft/deberta-large-mnli", **_) -> None:
    """Fail fast (before hours of training) when BERTScore could not run: no package, or the model unreachable."""
    try:
        import bert_score  # noqa: F401
    except ImportError as err:
        raise MetricUnavailable("BERTScore needs the bert-score package: pip install 'llava-cit[bertscore]'") from err
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model_type)
    except (OSError, ValueError) as err:
        raise MetricUnavailable(f"BERTScore cannot load '{model_type}': {str(err).splitlines()[0][:160]}") from None


# -- SARI -------------------------------------------------------------------------------------
def _ngrams(tokens: list[str], n: int) -> list[str]:
    return [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _sari_ngram(sgrams, cgrams, rgramslist, numref):
    rgramcounter = Counter(g for rgrams in rgramslist for g in rgrams)
    sgramcounter = Counter(sgrams)
    sgramcounter_rep = Counter({k: v * numref for k, v in sgramcounter.items()})
    cgramcounter = Counter(cgrams)
    cgramcounter_rep = Counter({k: v * numref for k, v in cgramcounter.items()})

    keep_rep = sgramcounter_rep & cgramcounter_rep
    keep_good = keep_rep & rgramcounter
    keep_all = sgramcounter_rep & rgramcounter
    keep_p = sum(keep_good[g] / keep_rep[g] for g in keep_rep) / len(keep_rep) if keep_rep else 1.0
    keep_r = sum(keep_good[g] for g in keep_rep) / sum(keep_all.values()) if keep_all else 1.0
    keep = 2 * keep_p * keep_r / (keep_p + keep_r) if (keep_p > 0 or keep_r > 0) else 0.0

    del_rep = sgramcounter_rep - cgramcounter_rep
    del_good = del_rep - rgramcounter
    delete = sum(del_good[g] / del_rep[g] for g in del_rep) / len(del_rep) if del_rep else 1.0

    added = set(cgramcounter) - set(sgramcounter)
    added_good = added & set(rgramcounter)
    added_all = set(rgramcounter) - set(sgramcounter)
    add_p = len(added_good) / len(added) if added else 1.0
    add_r = len(added_good) / len(added_all) if added_all else 1.0
    add = 2 * add_p * add_r / (add_p + add_r) if (add_p > 0 or add_r > 0) else 0.0
    return keep, delete, add


def _normalize(sentence: str) -> str:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(sentence.lower())


def sari_sentence(source: str, prediction: str, references: Sequence[str]) -> float:
    s, c = _normalize(source).split(" "), _normalize(prediction).split(" ")
    refs = [_normalize(r).split(" ") for r in references]
    parts = [_sari_ngram(_ngrams(s, n), _ngrams(c, n), [_ngrams(r, n) for r in refs], len(refs)) for n in (1, 2, 3, 4)]
    keep, delete, add = (sum(p[i] for p in parts) / 4 for i in range(3))
    return (keep + delete + add) / 3


def sari(sources: Sequence[str], predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Per-sample SARI on the 0-100 scale (the corpus score is their mean), by the pinned port."""
    if not (len(sources) == len(predictions) == len(references)):
        raise ValueError("sources, predictions and references must have the same length")
    return [100 * sari_sentence(s, p, r) for s, p, r in zip(sources, predictions, references)]


CONSTRAINT_KINDS = ("start", "contain", "end")


def constraint_met(prediction: str, kind: str, word: str) -> bool:
    """CT0's check (`computeConstrain`): the prediction starts with / contains / ends with the keyword."""
    prediction = prediction.strip()
    if kind == "start":
        return prediction.startswith(word)
    if kind == "contain":
        return word in prediction
    if kind == "end":
        return prediction.endswith(word)
    raise ValueError(f"unknown constraint type '{kind}' (known: {', '.join(CONSTRAINT_KINDS)})")
