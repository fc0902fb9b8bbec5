"""The metrics of the field's task sequences (UCIT, MLLM-DCL, CoIN), registered by name: each task file names the
one its benchmark's released evaluation script computes (see each rule's module for the script it follows).

A sample's references are its gold answers (`answers`); VQA accuracy reads the human answers from
`meta["vqa_answers"]` (VQAv2, VizWiz, TextVQA: ten), else the references when there are several; the science rule
reads the record's image path and question from `meta["image_file"]` and `meta["question_text"]`.
"""

from __future__ import annotations

from benchmarks import caption_cider, coin_rules, grounding, mllm_dcl_rules
from benchmarks.metrics import Sample, metric
from benchmarks.vqa_accuracy import textvqa_accuracy, vqa_accuracy


def _best(samples, rule) -> list[float]:
    """Per sample, the best of `rule(prediction, reference)` over its references (0 with none)."""
    return [max((rule(s.prediction, r) for r in s.references), default=0.0) for s in samples]


def human_answers(sample: Sample) -> list[str] | None:
    """The human answers VQA accuracy averages over, or None where the sample has a single gold answer."""
    answers = sample.meta.get("vqa_answers")
    if answers:
        return [str(a) for a in answers]
    return list(sample.references) if len(sample.references) > 1 else None


@metric("case_insensitive_exact")
def case_insensitive_exact_metric(samples, **_):
    """CoIN/UCIT exact match: prediction and answer equal once upper-cased (option letters: option accuracy)."""
    return _best(samples, coin_rules.case_insensitive_exact)


@metric("scienceqa_option")
def scienceqa_option_metric(samples, **_):
    """CoIN's ScienceQA option accuracy: the letter read from the prediction (A / "B. ..." / first 1-letter word)."""
    return _best(samples, coin_rules.scienceqa_option)


@metric("imagenet_containment")
def imagenet_containment_metric(samples, **_):
    """CoIN's ImageNet rule: the label in the prediction or the prediction in the label (empty prediction wrong)."""
    return _best(samples, coin_rules.imagenet_containment)


@metric("ocrvqa_exact")
def ocrvqa_exact_metric(samples, **_):
    """CoIN's OCR-VQA rule: lower-cased exact match; a prediction containing "Unanswerable" is wrong."""
    return _best(samples, coin_rules.ocrvqa_exact)


@metric("grounding_iou")
def grounding_iou_metric(samples, parser: str = "released", **_):
    """CoIN's grounding rule: IoU > 0.5 between "[x1, y1, x2, y2]" boxes (metric_args parser: released|numbers)."""
    return _best(samples, lambda prediction, box: grounding.grounding_correct(prediction, box, parser))


@metric("vqa_accuracy", applies=lambda s: human_answers(s) is not None)
def vqa_accuracy_metric(samples, **_):
    """Official VQA accuracy (vqaEval.py): min(#matching answers / 3, 1) over the 10-choose-9 subsets."""
    return [vqa_accuracy(s.prediction, answers) if (answers := human_answers(s)) else None for s in samples]


@metric("textvqa_accuracy", applies=lambda s: human_answers(s) is not None)
def textvqa_accuracy_metric(samples, **_):
    """TextVQA accuracy with the EvalAI answer processor (LLaVA's / CoIN's m4c evaluator, lmms-eval)."""
    return [textvqa_accuracy(s.prediction, answers) if (answers := human_answers(s)) else None for s in samples]


@metric("cider", applies=lambda s: bool(s.references), check=caption_cider.check_cider)
def cider_metric(samples, tokenizer: str = "ptb", **_):
    """CIDEr-D (pycocoevalcap; PTB tokenizer), document frequencies over the whole test set; can exceed 1."""
    scored = [i for i, s in enumerate(samples) if s.references]
    values = caption_cider.cider_scores([samples[i].prediction for i in scored],
                                        [samples[i].references for i in scored], tokenizer)
    out: list[float | None] = [None] * len(samples)
    for i, value in zip(scored, values):
        out[i] = value
    return out


@metric("word_containment")
def word_containment_metric(samples, **_):
    """MLLM-DCL remote sensing / driving (eval_ai2d.py): the gold answer occurs in the prediction as a word."""
    return _best(samples, mllm_dcl_rules.word_containment)


@metric("answer_containment")
def answer_containment_metric(samples, **_):
    """MLLM-DCL medical (eval_pvqa.py): the lower-cased gold answer occurs in the lower-cased prediction."""
    return _best(samples, mllm_dcl_rules.answer_containment)


@metric("science_answer")
def science_answer_metric(samples, **_):
    """MLLM-DCL science (eval_sci.py): exact for AI2D/TQA/VQA/SciVerse images, MapQA state overlap or containment."""
    return [max((mllm_dcl_rules.science_answer(s.prediction, r, s.meta.get("image_file", ""),
                                               s.meta.get("question_text", "")) for r in s.references), default=0.0)
            for s in samples]


@metric("compact_exact")
def compact_exact_metric(samples, **_):
    """MLLM-DCL finance (eval_finvis.py): the prediction without spaces and periods equals the answer, lower-cased."""
    return _best(samples, mllm_dcl_rules.compact_exact)
