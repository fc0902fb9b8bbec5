"""The answer rules of MLLM-CL's domain continual learning (MLLM-DCL) evaluation scripts (ETrain/Eval/LLaVA/CoIN/
eval_ai2d.py, eval_pvqa.py, eval_sci.py, eval_finvis.py; MCITlib runs the same ones). In each, a prediction that
contains "Unanswerable" is skipped but stays in the denominator: it scores 0.

* `word_containment` (remote sensing, autonomous driving: eval_ai2d.py) — lower-cased; a gold answer with a space
  must occur in the prediction; a one-word gold answer (periods removed) must occur as a word when the prediction
  has spaces (" gold", "gold ", "gold." or "gold," in it), else anywhere in it.
* `answer_containment` (medical: eval_pvqa.py) — the lower-cased gold answer occurs in the lower-cased prediction.
* `science_answer` (science: eval_sci.py) — images from AI2D, TQA, VQA or SciVerse (the file name's prefix before
  the first "_"): lower-cased equality; MapQA's "Which states ..." questions: the share of the gold answer's
  comma-separated states found among the prediction's comma-separated parts; other MapQA questions: containment.
* `compact_exact` (finance: eval_finvis.py) — the prediction lower-cased with spaces and periods removed equals the
  lower-cased gold answer (a letter, or yes/no).
"""

from __future__ import annotations

EXACT_SOURCES = ("AI2D", "TQA", "VQA", "SciVerse")


def _unanswerable(prediction: str) -> bool:
    return "Unanswerable" in prediction


def word_containment(prediction: str, answer: str) -> float:
    if _unanswerable(prediction):
        return 0.0
    pred, gold = prediction.lower(), str(answer).lower()
    if " " in gold:
        return float(gold in pred)
    gold = gold.replace(".", "")
    if " " in pred:
        return float(any(form in pred for form in (" " + gold, gold + " ", gold + ".", gold + ",")))
    return float(gold in pred)


def answer_containment(prediction: str, answer: str) -> float:
    if _unanswerable(prediction):
        return 0.0
    return float(str(answer).lower() in prediction.lower())


def science_answer(prediction: str, answer: str, image: str, question: str) -> float:
    """eval_sci.py; `image` is the record's image path, `question` its text (the script's `prompt`)."""
    if _unanswerable(prediction):
        return 0.0
    pred, gold = prediction.lower(), str(answer).lower()
    if str(image).split("/")[-1].split("_")[0] in EXACT_SOURCES:
        return float(gold == pred)
    if "Which states" in question:
        states = gold.split(",")
        parts = pred.split(",")
        return sum(1 for state in states if state in parts) / len(states)
    return float(gold in pred)


def compact_exact(prediction: str, answer: str) -> float:
    if _unanswerable(prediction):
        return 0.0
    return float(prediction.lower().replace(" ", "").replace(".", "") == str(answer).lower())
