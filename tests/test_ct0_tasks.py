"""The text track's five CT0 tasks: prompts rendered as specified, dataset readers, loaders, constraint metric."""

import json
import random

import pytest

from llava_cit.data.collation import Encoder
from llava_cit.data.ct0_datasets import read_ct0
from llava_cit.data.example import Example
from llava_cit.data.prompts import TEXT_PREAMBLE, text_prompt
from llava_cit.data.sources import load_source
from llava_cit.evaluation.scoring import extra_scores, score_all
from llava_cit.models.loading import load_model
from llava_cit.tasks import ct0_prompts
from llava_cit.tasks.registry import known_tasks, resolve_task
from llava_cit.util.errors import UserError

PREAMBLE = ("Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.")


def test_the_general_preamble_wraps_every_text_prompt():
    assert TEXT_PREAMBLE == PREAMBLE
    assert text_prompt("Simplify this.") == f"{PREAMBLE}\n\n### Instruction:\nSimplify this.\n\n### Response:\n"
    assert text_prompt("Simplify this.", "a long text") == (
        f"{PREAMBLE}\n\n### Instruction:\nSimplify this.\n\n### Input:\na long text\n\n### Response:\n")


def test_the_five_tasks_are_registered_with_the_papers_metrics():
    expected = {"simp": ("sari", []), "emdg": ("bertscore", []), "inqqg": ("bertscore", []),
                "exp": ("bertscore", []), "hgen": ("rouge1", ["constraint_rate"])}
    assert set(expected) <= set(known_tasks())
    for name, (metric, extra) in expected.items():
        task = resolve_task(name)
        assert (task.kind, task.metric, task.extra_metrics) == ("text", metric, extra)
        assert task.train["type"] == "ct0" and task.train["max_records"] == 100000
        if metric == "bertscore":
            assert task.metric_args["model_type"] == "microsoft/deberta-large-mnli"
    assert resolve_task("simp").train["reader"] == "wiki_auto" and resolve_task("simp").test["reader"] == "asset"


def only(examples):
    assert len(examples) == 1
    return examples[0]


class OneTemplate(random.Random):
    """An rng whose `choice` always picks the first prompt of a family (to pin the rendering)."""

    def choice(self, seq):
        return seq[0]


@pytest.fixture()
def first_prompt(monkeypatch):
    monkeypatch.setattr("llava_cit.data.ct0_datasets.random.Random", lambda *a, **k: OneTemplate(0))


def test_simp_renders_the_ct0_prompt_and_keeps_every_asset_reference(first_prompt):
    ex = only(read_ct0("asset", [{"original": "The cat sat upon the mat.", "simplifications": ["Cat sat.", "A cat sat."]}]))
    assert ex.instruction == "The cat sat upon the mat.\n\n===\n\nGiven the above text, write it with, simpler words:"
    assert ex.meta["answers"] == ["Cat sat.", "A cat sat."] and ex.meta["source"] == "The cat sat upon the mat."
    train = only(read_ct0("wiki_auto", [{"normal_sentence": "Long one.", "simple_sentence": "Short."}]))
    assert train.answer == "Short." and train.meta["source"] == "Long one."


def test_emdg_cuts_dialogues_ct0s_way(first_prompt):
    rows = [
        {"conv_id": "c1", "utterance_idx": 1, "speaker_idx": 1, "context": "proud", "prompt": "I won_comma_ finally",
         "utterance": "I won the race!"},
        {"conv_id": "c1", "utterance_idx": 2, "speaker_idx": 2, "context": "proud", "prompt": "I won_comma_ finally",
         "utterance": "Wow_comma_ congratulations!"},
        {"conv_id": "c1", "utterance_idx": 3, "speaker_idx": 1, "context": "proud", "prompt": "I won_comma_ finally",
         "utterance": "Thanks."},
        {"conv_id": "c2", "utterance_idx": 2, "speaker_idx": 1, "context": "sad", "prompt": "x", "utterance": "orphan"},
    ]
    examples = read_ct0("empathetic_dialogues", rows)
    assert [ex.answer for ex in examples] == ["Wow, congratulations!", "Thanks."]  # c2 does not start at turn 1
    assert examples[1].instruction == (
        'The associated emotion is "proud" and the input prompt is "I won, finally". Now what would be your '
        "response, given the following dialogue context:\n\n===\n\n- I won the race!\n- Wow, congratulations!")


def test_inqqg_goes_from_text_to_question_with_ct0s_filter(first_prompt):
    rows = [{"title": "Why is the sky blue?", "answers": {"text": ["low", "Rayleigh scattering."], "score": [1, 9]}},
            {"title": "Tell me about rain", "answers": {"text": ["no"], "score": [1]}},
            {"title": "How? Why?", "answers": {"text": ["two questions"], "score": [1]}}]
    ex = only(read_ct0("eli5", rows))
    assert ex.instruction == 'Given the following text, what could have been an inquisive question: "Rayleigh scattering."'
    assert ex.answer == "Why is the sky blue?"


def test_exp_names_the_gold_label_in_ct0s_words(first_prompt):
    rows = [{"premise": "A man sleeps.", "hypothesis": "A man runs.", "label": 2, "explanation_1": "One cannot do both.",
             "explanation_2": "Sleeping is not running.", "explanation_3": ""},
            {"premise": "p", "hypothesis": "h", "label": -1, "explanation_1": "no gold label"}]
    ex = only(read_ct0("esnli", rows))
    assert ex.instruction == ('Explain why the two following sentences do not entail each other: '
                              '"Sentence 1: A man sleeps."; Sentence 2: "A man runs."')
    assert ex.meta["answers"] == ["One cannot do both.", "Sleeping is not running."]


def test_hgen_cycles_the_keyword_constraint(first_prompt):
    rows = [{"document": f"article {i} text", "summary": f"first middle last{i}"} for i in range(3)]
    examples = read_ct0("gigaword", rows)
    assert [ex.meta["constraint"]["type"] for ex in examples] == ["start", "contain", "end"]
    assert examples[0].instruction == 'Make a title for this article, starting with "first": article 0 text'
    assert examples[2].meta["constraint"]["word"] == "last2"
    assert examples[2].instruction == 'Make a title for this article, ending with "last2": article 2 text'


def test_prompts_are_drawn_from_their_family_reproducibly():
    rows = [{"normal_sentence": f"sentence {i}", "simple_sentence": "s"} for i in range(40)]
    first, again = read_ct0("wiki_auto", rows, seed=3), read_ct0("wiki_auto", rows, seed=3)
    assert [e.instruction for e in first] == [e.instruction for e in again]
    used = {next(t for t in ct0_prompts.SIMPLIFICATION if ct0_prompts.fill(t, {"source": f"sentence {i}"}) == e.instruction)
            for i, e in enumerate(first)}
    assert len(used) > 3  # several of the eleven CT0 wordings, each one exactly


def test_fill_needs_every_field_and_never_rescans_values():
    with pytest.raises(KeyError, match="document"):
        ct0_prompts.fill(ct0_prompts.MAKE_A_TITLE["start"][0], {"TO_REPLACE_1": "x"})
    assert ct0_prompts.fill('Make this text simpler: "[source]"', {"source": "a [source] b"}) == \
        'Make this text simpler: "a [source] b"'


def test_constraint_rate_follows_ct0s_check():
    assert ct0_prompts.constraint_met("storm hits coast", "start", "storm")
    assert not ct0_prompts.constraint_met("a storm hits", "start", "storm")
    assert ct0_prompts.constraint_met("a storm hits", "contain", "storm")
    assert ct0_prompts.constraint_met("coast hit by storm", "end", "storm")
    assert not ct0_prompts.constraint_met("storm hits coast", "end", "storm")
    task = resolve_task("hgen")
    examples = [Example(id=str(i), turns=[("q", "storm hits coast")], meta={"constraint": c}) for i, c in enumerate(
        [{"type": "start", "word": "storm"}, {"type": "end", "word": "coast"}, {"type": "contain", "word": "rain"}])]
    examples.append(Example(id="no-constraint", turns=[("q", "x")]))
    rates = extra_scores(task, ["storm hits coast"] * 4, examples)["constraint_rate"]
    assert rates == [1.0, 1.0, 0.0, None]
    assert score_all(task, ["storm hits coast"], examples[:1]) == [pytest.approx(1.0)]


def test_ct0_source_reads_local_files_through_datasets(tmp_path):
    rows = [{"document": f"doc {i}", "summary": f"title number {i}"} for i in range(7)]
    (tmp_path / "giga.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    source = {"type": "ct0", "reader": "gigaword", "path": "json", "data_files": str(tmp_path / "giga.jsonl"),
              "split": "train", "max_records": 5}
    examples = load_source(source, "hgen", "test")
    assert len(examples) == 5 and all(ex.task == "hgen" for ex in examples)
    assert examples[0].answer == "title number 0" and "doc 0" in examples[0].instruction
    with pytest.raises(UserError, match="reader"):
        load_source({"type": "ct0", "path": "json"}, "hgen", "test")


def test_jsonl_text_tasks_carry_references_source_and_constraint(tmp_path):
    lines = [{"instruction": "Make a title, starting with \"storm\":", "input": "A storm hit the coast.",
              "output": "storm hits coast", "constraint": {"type": "start", "word": "storm"}},
             {"instruction": "Simplify:", "input": "The feline reposed.", "output": "The cat slept.",
              "references": ["The cat slept.", "The cat rested."]}]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    first, second = load_source({"type": "jsonl", "path": str(path)}, "t", "test")
    assert first.meta["constraint"] == {"type": "start", "word": "storm"}
    assert second.meta["answers"] == ["The cat slept.", "The cat rested."]
    path.write_text(json.dumps({"instruction": "x", "output": "y", "constraint": {"type": "middle", "word": "z"}}))
    with pytest.raises(UserError, match=r"line 1: field 'constraint'"):
        load_source({"type": "jsonl", "path": str(path)}, "t", "test")


def test_the_model_sees_preamble_then_the_filled_ct0_prompt(first_prompt):
    loaded = load_model("tiny-bloom")
    ex = only(read_ct0("esnli", [{"premise": "A dog runs.", "hypothesis": "A dog sleeps.", "label": "contradiction",
                                  "explanation_1": "e"}]))
    prompt_ids = Encoder(loaded).encode_prompt(ex)
    expected = loaded.tokenizer(text_prompt(ex.instruction), add_special_tokens=False).input_ids
    assert prompt_ids[-len(expected):] == expected


def test_a_run_whose_bertscore_model_is_unreachable_fails_before_training(tmp_path):
    from conftest import tiny_run_config

    from llava_cit.config import load_config
    from llava_cit.continual.runner import ContinualRunner

    config = load_config(None, base=tiny_run_config(model="tiny-bloom", tasks=["emdg"]))
    with pytest.raises(UserError, match="task 'emdg': BERTScore cannot load 'microsoft/deberta-large-mnli'"):
        ContinualRunner(config, tmp_path / "run")
    assert not (tmp_path / "run" / "adapters").exists()


def test_bloomz_configs_carry_the_papers_table_7_settings():
    from pathlib import Path

    from llava_cit.config import load_config

    configs = sorted(Path(__file__).parent.parent.glob("scripts/configs/bloomz_*_text_*.yaml"))
    assert len(configs) == 4
    seen = set()
    for path in configs:
        c = load_config(path)
        assert c.tasks == ["simp", "emdg", "inqqg", "exp", "hgen"] and c.method == "switchcit"
        assert (c.lora.r, c.lora.alpha, c.lora.dropout) == (64, 16, 0.05)
        assert (c.train.lr, c.train.epochs, c.train.scheduler, c.train.optim) == (2e-5, 3, "constant", "adamw_torch")
        seen.add((c.model, c.retention.fraction))
    assert seen == {(m, f) for m in ("bigscience/bloomz-1b1", "bigscience/bloomz-7b1") for f in (0.0001, 0.01)}
