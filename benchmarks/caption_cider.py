"""CIDEr-D of generated captions, with pycocoevalcap (the COCO caption evaluation) as the caption benchmarks run it.

UCIT's caption tasks (VizWiz-caption, Flickr30k) are scored by HiDe-LLaVA's / MCITlib's eval_caption.py: COCO's
COCOEvalCap over the test file's predictions and the released `val_coco_type_3000.json` references, which tokenises
with the Stanford PTB tokenizer (pycocoevalcap's PTBTokenizer, a Java program) and scores with `Cider()`. Here the
same two classes run over (prediction, references) pairs. CIDEr's document frequencies come from the whole set of
references, so the per-sample values are only meaningful together: their mean is the corpus CIDEr the official
script prints (`Cider.compute_score` returns exactly that mean).

`tokenizer="ptb"` (the default) needs Java; `tokenizer="simple"` lower-cases and splits on spaces after dropping the
punctuation PTBTokenizer drops, for plain captions where both agree (the miniature sequences' synthetic captions).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator, Sequence

from benchmarks.text_metrics import MetricUnavailable

PTB_PUNCTUATION = ("''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...",
                   ";")
TOKENIZERS = ("ptb", "simple")


def check_cider(tokenizer: str = "ptb", **_) -> None:
    """Fail fast where CIDEr could not run: pycocoevalcap missing, or Java missing for the PTB tokenizer."""
    if tokenizer not in TOKENIZERS:
        raise MetricUnavailable(f"cider: tokenizer must be one of {', '.join(TOKENIZERS)}, got '{tokenizer}'")
    try:
        import pycocoevalcap.cider.cider  # noqa: F401
    except ImportError:
        raise MetricUnavailable("cider needs pycocoevalcap: pip install 'llava-cit[captions]'") from None
    if tokenizer == "ptb" and shutil.which("java") is None:
        raise MetricUnavailable("cider's PTB tokenizer (pycocoevalcap) needs Java on the PATH (apt-get install "
                                "default-jre-headless), or metric_args tokenizer: simple")


def simple_tokenize(caption: str) -> str:
    """Lower-case, punctuation PTBTokenizer removes split off and dropped, words joined by single spaces."""
    pieces = re.findall(r"\.\.\.|--|``|''|\w+(?:'\w+)?|[^\w\s]", caption.lower())
    return " ".join(piece for piece in pieces if piece not in PTB_PUNCTUATION)


@contextlib.contextmanager
def _java_quiet() -> Iterator[None]:
    """The PTB tokenizer's Java process reports its speed on the inherited stderr: silence that, for its run only."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tokenized(predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str):
    gts = {i: [{"caption": str(r)} for r in refs] for i, refs in enumerate(references)}
    res = {i: [{"caption": str(p)}] for i, p in enumerate(predictions)}
    if tokenizer == "ptb":
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        ptb = PTBTokenizer()
        with _java_quiet():
            tokenized = ptb.tokenize(gts), ptb.tokenize(res)
        if len(tokenized[0]) != len(gts) or any(len(tokenized[0][i]) != len(gts[i]) for i in tokenized[0]):
            raise MetricUnavailable("cider: pycocoevalcap's PTB tokenizer (Java) returned fewer captions than it "
                                    "was given")
        return tokenized
    return ({i: [simple_tokenize(c["caption"]) for c in caps] for i, caps in gts.items()},
            {i: [simple_tokenize(c["caption"]) for c in caps] for i, caps in res.items()})


def cider_scores(predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str = "ptb") -> list[float]:
    """CIDEr-D per prediction (document frequencies over all `references`); the mean is the corpus CIDEr."""
    if len(predictions) != len(references):
        raise ValueError(f"cider: {len(predictions)} predictions for {len(references)} reference sets")
    if not predictions:
        return []
    check_cider(tokenizer)
    from pycocoevalcap.cider.cider import Cider

    gts, res = _tokenized(predictions, references, tokenizer)
    # PTBTokenizer gives a blank prediction no line of its own: restore the empty caption it had
    res = {i: res.get(i) or [""] for i in range(len(predictions))}
    _, scores = Cider().compute_score(gts, res)
    return [float(s) for s in scores]
