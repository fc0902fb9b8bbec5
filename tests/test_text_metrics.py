import pytest
import torch

from benchmarks.text_metrics import bertscore_f1, rouge1, sari


def test_sari_classic_example_matches_the_reference_value():
    # The example in the reference SARI implementation's documentation (Xu et al. 2016 / evaluate).
    sources = ["About 95 species are currently accepted."]
    predictions = ["About 95 you now get in."]
    references = [["About 95 species are currently known.", "About 95 species are now accepted.",
                   "95 species are now accepted."]]
    assert sari(sources, predictions, references) == [pytest.approx(26.953601953601954, abs=1e-9)]


def test_sari_rewards_the_reference_rewrite():
    source = "the cat perched on the mat which was red"
    refs = ["the cat sat on the red mat"]
    assert sari([source], refs, [refs])[0] > sari([source], [source], [refs])[0]


def test_rouge1_by_hand():
    # "the cat sat" vs "the cat ran": 2 of 3 unigrams match both ways -> P = R = F = 2/3
    assert rouge1(["the cat sat"], ["the cat ran"]) == [pytest.approx(2 / 3)]
    assert rouge1(["a b"], [["x y", "a b"]]) == [pytest.approx(1.0)]  # best of several references
    assert rouge1(["completely different"], ["the cat ran"]) == [0.0]


def test_bertscore_wiring_with_a_tiny_local_model(tmp_path):
    from transformers import BertConfig, BertModel

    from switch.tiny import build_word_tokenizer

    tokenizer = build_word_tokenizer("the cat sat on a mat dog ran far away".split())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    scores = bertscore_f1(["the cat sat on a mat", "dog ran far away"], ["the cat sat on a mat", "the cat sat"],
                          model_type=str(tmp_path), num_layers=2, device="cpu")
    assert scores[0] == pytest.approx(1.0, abs=1e-5)  # identical sentences: every token matches itself
    assert scores[1] < 1.0
    multi = bertscore_f1(["dog ran far away", "the cat sat"], [["the cat sat", "dog ran far away"], "the cat sat"],
                         model_type=str(tmp_path), num_layers=2, device="cpu")  # e-SNLI: up to 3 references
    assert multi == [pytest.approx(1.0, abs=1e-5), pytest.approx(1.0, abs=1e-5)]  # the matching reference counts


def test_sari_never_runs_code_from_the_hub(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("evaluate")

    def load(name):
        raise AssertionError("evaluate.load must not be called: it would run a script fetched from the Hub")

    fake.load = load
    monkeypatch.setitem(sys.modules, "evaluate", fake)
    assert sari(["a b c"], ["a b"], [["a b"]])[0] > 0

