"""VQA accuracy over the human answers, as the official evaluations compute it.

Two answer processors are in use in the field, and each benchmark names its own:

* `vqa_accuracy` — the official VQA evaluation (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py,
  used for VQAv2 and, in its VizWiz copy, for VizWiz): the prediction goes through processPunctuation and
  processDigitArticle (number words to digits, articles dropped, the contractions map); the human answers only
  through processPunctuation, and only when they are not all equal.
* `textvqa_accuracy` — the EvalAI answer processor (mmf's, copied into LLaVA's m4c_evaluator.py, CoIN's and
  lmms-eval's): prediction and every human answer lower-cased, "," "?" removed, "'s" split, then the same
  punctuation, digit and article steps. CoIN and LLaVA score TextVQA with it.

Both then give min(#matching other answers / 3, 1) averaged over the ten leave-one-out subsets of the answers
(the "10 choose 9" average; an answer is left out by position, so a repeated answer counts once per copy).
The quirks of the official code are kept: the period regex `(?!<=\\d)(\\.)(?!\\d)` (a lookahead, not the
lookbehind it reads as) and `sub(..., re.UNICODE)`, which passes 32 as the *count* of replacements.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# vqaEval.py (the current official version, straight apostrophes), entry for entry
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCTUATION = (";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
               "!")
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_UNICODE_AS_COUNT = int(re.UNICODE)  # vqaEval.py passes re.UNICODE where sub() takes its count: at most 32 periods go


def process_punctuation(text: str) -> str:
    """vqaEval.processPunctuation: a punctuation mark next to a space (or any text with a digit,digit comma) is
    deleted, else replaced by a space; then periods not between digits are deleted."""
    out = text
    for mark in PUNCTUATION:
        if (mark + " " in text or " " + mark in text) or COMMA_STRIP.search(text) is not None:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=_UNICODE_AS_COUNT)


def process_digit_article(text: str) -> str:
    """vqaEval.processDigitArticle: lower-case, number words to digits, articles dropped, contractions restored."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_prediction(prediction: str) -> str:
    """The official evaluation's processing of a predicted answer."""
    text = prediction.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def evalai_normalize(answer: str) -> str:
    """The EvalAI answer processor (TextVQA; lmms-eval's EvalAIAnswerProcessor): word_tokenize, then the same steps."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def _leave_one_out(prediction: str, answers: Sequence[str]) -> float:
    """Mean over each answer left out (by position) of min(#other answers equal to the prediction / 3, 1)."""
    if not answers:
        return 0.0
    total = 0.0
    for left_out in range(len(answers)):
        matches = sum(1 for i, answer in enumerate(answers) if i != left_out and answer == prediction)
        total += min(1.0, matches / 3)
    return total / len(answers)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one prediction against its human answers (VQAv2: ten)."""
    answers = [str(a) for a in answers]
    if len(set(answers)) > 1:
        answers = [process_punctuation(a) for a in answers]
    return _leave_one_out(normalize_prediction(prediction), answers)


def textvqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """TextVQA accuracy as the m4c / EvalAI evaluator computes it (prediction and answers both processed)."""
    return _leave_one_out(evalai_normalize(prediction), [evalai_normalize(str(a)) for a in answers])
