"""The task sequences' metrics against their official implementations: pycocoevalcap's Cider (installed), lmms-eval's
EvalAI answer processor (when installed), and otherwise fixtures worked out by the released scripts' rules
(vqaEval.py, m4c_evaluator.py, CoIN's and MLLM-CL's eval_*.py), edge cases included."""

import pytest

from benchmarks import coin_rules, grounding, mllm_dcl_rules
from benchmarks.caption_cider import cider_scores, simple_tokenize
from benchmarks.metrics import METRICS, Sample, score
from benchmarks.vqa_accuracy import (
    evalai_normalize,
    normalize_prediction,
    process_punctuation,
    textvqa_accuracy,
    vqa_accuracy,
)


@pytest.mark.parametrize("prediction, answers, expected", [
    ("Yes.", ["yes"] * 10, 1.0),  # a period not between digits is stripped
    ("Two", ["2"] * 10, 1.0),  # number words become digits, prediction lower-cased
    ("a dog", ["dog"] * 10, 1.0),  # articles dropped
    ("dont", ["don't"] * 10, 1.0),  # the contractions map
    ("1,000", ["1000"] * 10, 1.0),  # a digit,digit comma: punctuation deleted, not spaced
    ("3.5", ["3.5"] * 10, 1.0),  # a period between digits stays
    ("red/blue", ["red blue"] * 10, 1.0),  # "/" not next to a space becomes a space
    ("two", ["2", "2"] + ["3"] * 8, 0.6),  # 2 of 10: each left-out "2" leaves 1 match (1/3), each "3" 2 (2/3)
    ("cat", ["cat"] * 3 + ["dog"] * 7, 0.9),  # 3 of 10: 2/3 three times, 1 seven times
    ("cat", ["cat"] * 4 + ["dog"] * 6, 1.0),
    ("cow", ["cat"] * 10, 0.0),
])
def test_vqa_accuracy_follows_the_official_vqa_eval(prediction, answers, expected):
    assert vqa_accuracy(prediction, answers) == pytest.approx(expected)


def test_vqa_eval_quirks_are_kept():
    # human answers are processed only when they differ (and only for punctuation): ten "yes!" stay "yes!"
    assert vqa_accuracy("yes!", ["yes!"] * 10) == 0.0
    assert process_punctuation("yes, no") == "yes no"  # "," next to a space: deleted
    assert process_punctuation("a-b") == "a b"  # "-" alone: a space
    assert normalize_prediction("The\tThree  Dogs") == "3 dogs"
    # vqaEval.py passes re.UNICODE (32) as sub()'s count: only the first 32 periods go
    assert normalize_prediction("a." * 40).count(".") == 8


def test_textvqa_accuracy_processes_answers_and_prediction_alike():
    answers = ["Coca Cola"] * 4 + ["coca-cola"] * 6
    assert textvqa_accuracy("coca cola", answers) == pytest.approx(1.0)  # 4 matches
    assert textvqa_accuracy("Coca-Cola?", answers) == pytest.approx(1.0)  # "?" dropped, "-" spaced: "coca cola"
    assert evalai_normalize("What's") == "what 's"  # word_tokenize splits "'s"
    assert textvqa_accuracy("pepsi", answers) == 0.0


def test_evalai_processor_matches_lmms_eval():
    module = pytest.importorskip("lmms_eval.tasks._task_utils.vqa_eval_metric")
    theirs = module.EvalAIAnswerProcessor()
    for text in ["Yes.", "Two dogs", "a dog's toy", "1,000", "3.5", "dont", "red/blue!", "It is the one-way.",
                 "What's (left)?", "None"]:
        assert evalai_normalize(text) == theirs(text), text


def test_cider_equals_pycocoevalcap_on_ptb_tokens():
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    predictions = ["A man rides a horse.", "two dogs play in the snow", "", "a red bus"]
    references = [["A man riding a horse.", "a person on a horse", "man on horseback"],
                  ["Two dogs playing in snow.", "dogs in the snow"], ["a cat"], ["a red bus on a street", "bus"]]
    ours = cider_scores(predictions, references)
    ptb = PTBTokenizer()
    gts = ptb.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = ptb.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    res = {i: res.get(i) or [""] for i in range(len(predictions))}
    corpus, theirs = Cider().compute_score(gts, res)
    assert ours == pytest.approx(list(theirs))
    assert sum(ours) / len(ours) == pytest.approx(corpus)  # the per-sample mean is the corpus CIDEr
    assert ours[2] == 0.0


def test_simple_tokenizer_agrees_with_ptb_on_plain_captions():
    captions = ["red circle left and blue square right", "a yellow square and a green circle"]
    refs = [[c, c.replace(" and ", " with ")] for c in captions]
    assert cider_scores(captions, refs, "simple") == pytest.approx(cider_scores(captions, refs, "ptb"))
    assert simple_tokenize("A man, riding... a horse.") == "a man riding a horse"


@pytest.mark.parametrize("prediction, parsed", [
    ("[0.12, 0.34, 0.56, 0.78]", [0.12, 0.34, 0.56, 0.7]),  # eval_grounding.py's [1:-1] drops the last digit
    ("[ 0.06, 0.09, 0.44, 0.47 ]", [0.06, 0.09, 0.44, 0.47]),  # spaces inside the brackets: nothing lost
    ("[0.1, 0.2, 0.3]", None),  # three numbers
    ("the dog on the left", None),
])
def test_grounding_released_parser(prediction, parsed):
    assert grounding.parse_released(prediction) == (pytest.approx(parsed) if parsed else None)


def test_grounding_iou_rule():
    gold = "[0.1, 0.1, 0.5, 0.5]"
    assert grounding.grounding_correct("[0.10, 0.10, 0.50, 0.50]", gold) == 1.0
    assert grounding.iou([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]) == pytest.approx(0.5)
    assert grounding.grounding_correct("[0.00, 0.00, 1.00, 0.50]", "[0.0, 0.0, 1.0, 1.0]", "numbers") == 0.0  # > 0.5
    assert grounding.grounding_correct("[0.60, 0.60, 0.90, 0.90]", gold) == 0.0
    assert grounding.grounding_correct("box: 0.1 0.1 0.5 0.5", gold, "numbers") == 1.0
    assert grounding.grounding_correct("box: 0.1 0.1 0.5 0.5", gold) == 0.0  # the released parser needs commas


def test_coin_rules():
    letter = coin_rules.scienceqa_letter
    assert [letter(p) for p in ("A", "B. cat", "The answer is C.", "c", "no letter here")] == \
        ["A", "B", "C", "C", "FAILED"]
    assert coin_rules.case_insensitive_exact("Paris", "paris") == 1.0
    assert coin_rules.case_insensitive_exact("Paris.", "paris") == 0.0
    assert coin_rules.imagenet_containment("a golden retriever", "golden retriever") == 1.0
    assert coin_rules.imagenet_containment("retriever", "golden retriever") == 1.0
    assert coin_rules.imagenet_containment("", "golden retriever") == 0.0
    assert coin_rules.ocrvqa_exact("Unanswerable", "unanswerable") == 0.0
    assert coin_rules.ocrvqa_exact("The Hobbit", "the hobbit") == 1.0


def test_mllm_dcl_rules():
    wc = mllm_dcl_rules.word_containment
    assert wc("There are 2 roads.", "2") == 1.0 and wc("There are 3 roads", "2") == 0.0
    assert wc("There are 12 roads", "2") == wc("There are 23 roads", "2") == 1.0  # the released rule: "2 ", " 2"
    assert wc("2", "2.") == 1.0 and wc("two trailers are parked", "two trailers") == 1.0
    assert wc("Unanswerable 2", "2") == 0.0
    assert mllm_dcl_rules.answer_containment("Yes, acid is present", "yes") == 1.0
    sci = mllm_dcl_rules.science_answer
    assert sci("bear", "Bear", "Sci/AI2D_12.png", "Who is the top predator?") == 1.0
    assert sci("a bear", "Bear", "Sci/AI2D_12.png", "Who is the top predator?") == 0.0
    assert sci("texas,ohio", "texas,ohio,utah", "Sci/MapQA_3.png", "Which states have ...?") == pytest.approx(2 / 3)
    assert sci("it is texas", "texas", "Sci/MapQA_3.png", "What is ...?") == 1.0
    assert mllm_dcl_rules.compact_exact("A.", "A") == 1.0 and mllm_dcl_rules.compact_exact("Yes", "No") == 0.0


def test_metrics_registered_and_scored_by_name():
    for name in ("vqa_accuracy", "textvqa_accuracy", "cider", "grounding_iou", "scienceqa_option",
                 "case_insensitive_exact", "imagenet_containment", "ocrvqa_exact", "word_containment",
                 "answer_containment", "science_answer", "compact_exact"):
        assert name in METRICS
    samples = [Sample("two", ["2"], meta={"vqa_answers": ["2"] * 10}), Sample("x", ["x"])]
    assert score("vqa_accuracy", samples) == [1.0, None]  # one gold answer: not a VQA sample
    assert score("grounding_iou", [Sample("[0.10, 0.10, 0.50, 0.50]", ["[0.1, 0.1, 0.5, 0.5]"])]) == [1.0]
    assert score("science_answer", [Sample("bear", ["bear"], meta={"image_file": "AI2D_1.png"})]) == [1.0]
