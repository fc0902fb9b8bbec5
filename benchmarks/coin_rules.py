"""The answer rules of CoIN's released evaluation scripts (ETrain/Eval/LLaVA/CoIN/eval_*.py), which HiDe-LLaVA and
MCITlib copy for UCIT (their eval_deepseek_r1.py is CoIN's exact-match rule).

* `case_insensitive_exact` — `pred.upper() == answer.upper()`: CoIN's VQAv2 and VizWiz, UCIT's ImageNet-R,
  ArxivQA, IconQA and CLEVR-Math (multiple-choice answers there are the option letter, so this is option accuracy
  without any parsing of the prediction).
* `scienceqa_option` — eval_science_qa.py: the prediction is an option letter if it is one ("A"), starts with one
  followed by ". " ("B. cat"), or else its first single-character word, upper-cased; right when that is the gold
  letter (a letter beyond the record's options can never equal its gold letter).
* `imagenet_containment` — eval_ImagetNet.py: right when the label is in the prediction or the prediction in
  the label (case-sensitive). An empty prediction is counted wrong here, where the script would count it right
  ("" is in every label).
* `ocrvqa_exact` — eval_ocrvqa.py: a prediction containing "Unanswerable" is wrong; else lower-cased equality.
"""

from __future__ import annotations

import re

OPTIONS = ("A", "B", "C", "D", "E")
_SINGLE_CHARACTER_WORD = re.compile(r"\b(\w)\b")


def case_insensitive_exact(prediction: str, answer: str) -> float:
    return float(prediction.upper() == str(answer).upper())


def scienceqa_letter(prediction: str) -> str:
    """The option letter eval_science_qa.py reads from a prediction, or "FAILED"."""
    if prediction in OPTIONS:
        return prediction
    if len(prediction) >= 3 and prediction[0] in OPTIONS and prediction[1:3] == ". ":
        return prediction[0]
    found = _SINGLE_CHARACTER_WORD.findall(prediction)
    return found[0].upper() if found else "FAILED"


def scienceqa_option(prediction: str, answer: str) -> float:
    return float(scienceqa_letter(prediction) == str(answer).strip())


def imagenet_containment(prediction: str, label: str) -> float:
    if not prediction:
        return 0.0
    return float(label in prediction or prediction in label)


def ocrvqa_exact(prediction: str, answer: str) -> float:
    if "Unanswerable" in prediction:
        return 0.0
    return float(prediction.lower() == str(answer).lower())
