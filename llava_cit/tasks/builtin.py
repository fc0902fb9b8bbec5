"""The built-in tasks, one registration each.

`gqa` and `ocrvqa` read what `llava-cit data` prepares under the data root `$LLAVA_CIT_DATA` (LLaVA's
`playground/data`: the image folders coco/, gqa/, ocr_vqa/, ... and our llava_cit/ split files). The LLaVA
benchmarks that `llava-cit eval --benchmark` names (gqa, ocrbench, ocrvqa) are tasks like these: each declares the
reader of its official file (`data_reader`, for `--data`), its prompt, its metric, its report and its budget."""

from llava_cit.data.prompts import GQA_SUFFIX
from llava_cit.tasks.catalog import register
from llava_cit.tasks.spec import TaskSpec

register(TaskSpec(
    name="synth-shapes", description="synthetic GQA-like visual reasoning (colours, shapes, positions, counts)",
    train={"type": "synthetic", "generator": "synth-shapes", "count": 1000},
    test={"type": "synthetic", "generator": "synth-shapes", "count": 200}, max_new_tokens=4,
))
register(TaskSpec(
    name="synth-ocr", description="synthetic OCR-VQA-like text reading (signs, book titles)",
    train={"type": "synthetic", "generator": "synth-ocr", "count": 1000},
    test={"type": "synthetic", "generator": "synth-ocr", "count": 200}, max_new_tokens=4,
))
register(TaskSpec(
    name="gqa", description="GQA (Hudson & Manning 2019), LLaVA-1.5 prompt and scoring",
    train={"type": "llava", "path": "$LLAVA_CIT_DATA/llava_cit/gqa.json", "image_folder": "$LLAVA_CIT_DATA"},
    test={"type": "hf", "path": "lmms-lab/GQA", "name": "testdev_balanced_instructions", "split": "testdev",
          "images": {"path": "lmms-lab/GQA", "name": "testdev_balanced_images", "split": "testdev"}},
    suffix=GQA_SUFFIX, normalizer="gqa", metric="gqa", report="gqa", data_reader="gqa", max_new_tokens=16,
))
register(TaskSpec(
    name="ocrvqa", description="OCR-VQA (Mishra et al. 2019) in LLaVA format; lower-case exact match",
    train={"type": "llava", "path": "$LLAVA_CIT_DATA/llava_cit/ocr_vqa.json", "image_folder": "$LLAVA_CIT_DATA"},
    test={"type": "llava", "path": "$LLAVA_CIT_DATA/llava_cit/ocr_vqa_test.json", "image_folder": "$LLAVA_CIT_DATA"},
    suffix=GQA_SUFFIX, normalizer="lower", report="accuracy", data_reader="ocrvqa",
    max_new_tokens=128,  # book titles: LLaVA evaluates with 128
))
register(TaskSpec(
    name="ocrbench", description="OCRBench (Liu et al. 2023): its 1,000 questions (evaluation only), the official "
                                 "containment rule and report",
    test={"type": "benchmark", "benchmark": "ocrbench", "path": "$LLAVA_CIT_DATA/OCRBench/OCRBench.json",
          "images": "$LLAVA_CIT_DATA/OCRBench/OCRBench_Images"},
    metric="ocrbench", report="ocrbench", data_reader="ocrbench", max_new_tokens=128,
))
register(TaskSpec(
    name="ocrvqa-ocrbench", description="the paper's OCR task: trained on OCR-VQA, evaluated on OCRBench's Scene "
                                        "Text-centric VQA (200 questions) with OCRBench's containment rule",
    train={"type": "llava", "path": "$LLAVA_CIT_DATA/llava_cit/ocr_vqa.json", "image_folder": "$LLAVA_CIT_DATA"},
    test={"type": "benchmark", "benchmark": "ocrbench", "path": "$LLAVA_CIT_DATA/OCRBench/OCRBench.json",
          "images": "$LLAVA_CIT_DATA/OCRBench/OCRBench_Images", "types": ["Scene Text-centric VQA"]},
    suffix=GQA_SUFFIX, metric="ocrbench", max_new_tokens=128,
))

# The offline text track: generated articles, CT0 prompt families, tiny BLOOM (llava-cit demo --track text)
register(TaskSpec(
    name="synth-simp", kind="text", metric="sari", max_new_tokens=8,
    description="generated Simp in miniature: drop the size word and the place (CT0 simplification prompts); SARI",
    train={"type": "synthetic", "generator": "synth-simp", "count": 1000},
    test={"type": "synthetic", "generator": "synth-simp", "count": 200},
))
register(TaskSpec(
    name="synth-inqqg", kind="text", metric="rouge1", max_new_tokens=8,
    description="generated InqQG in miniature: the question an article answers (CT0 question prompts); ROUGE-1",
    train={"type": "synthetic", "generator": "synth-inqqg", "count": 1000},
    test={"type": "synthetic", "generator": "synth-inqqg", "count": 200},
))
register(TaskSpec(
    name="synth-hgen", kind="text", metric="rouge1", extra_metrics=["constraint_rate"], max_new_tokens=8,
    description="generated HGen in miniature: a headline with a start/contain/end keyword (CT0 title prompts); "
                "ROUGE-1 and constraint rate",
    train={"type": "synthetic", "generator": "synth-hgen", "count": 1000},
    test={"type": "synthetic", "generator": "synth-hgen", "count": 200},
))

# The BLOOMZ text track (SwitchCIT, after CT0): Simp -> Emdg -> InqQG -> Exp -> HGen, with the CT0 prompts.
# Hub ids are the datasets' current homes; any of them can be replaced in a config, e.g.
#   tasks: [{name: hgen, train: {path: json, data_files: my_gigaword.jsonl, split: train}}]
BERTSCORE = {"model_type": "microsoft/deberta-large-mnli"}  # the paper's BERTScore model
register(TaskSpec(
    name="simp", kind="text", metric="sari", max_new_tokens=64,
    description="Simp: text simplification, trained on WikiAuto, evaluated on ASSET (10 references); SARI",
    train={"type": "ct0", "reader": "wiki_auto", "path": "chaojiang06/wiki_auto", "name": "auto_full_with_split",
           "split": "train", "max_records": 100000},
    test={"type": "ct0", "reader": "asset", "path": "facebook/asset", "name": "simplification", "split": "validation"},
))
register(TaskSpec(
    name="emdg", kind="text", metric="bertscore", metric_args=BERTSCORE, max_new_tokens=64,
    description="Emdg: empathetic dialogue response given the emotion and the context; BERTScore F1",
    train={"type": "ct0", "reader": "empathetic_dialogues", "path": "facebook/empathetic_dialogues", "split": "train",
           "max_records": 100000},
    test={"type": "ct0", "reader": "empathetic_dialogues", "path": "facebook/empathetic_dialogues", "split": "test"},
))
register(TaskSpec(
    name="inqqg", kind="text", metric="bertscore", metric_args=BERTSCORE, max_new_tokens=48,
    description="InqQG: the inquisitive question a text answers (ELI5, text -> question); BERTScore F1",
    train={"type": "ct0", "reader": "eli5", "path": "eli5", "split": "train_asks", "max_records": 100000},
    test={"type": "ct0", "reader": "eli5", "path": "eli5", "split": "test_asks"},
))
register(TaskSpec(
    name="exp", kind="text", metric="bertscore", metric_args=BERTSCORE, max_new_tokens=64,
    description="Exp: explain why two sentences entail / contradict / are unrelated (e-SNLI); BERTScore F1",
    train={"type": "ct0", "reader": "esnli", "path": "esnli/esnli", "split": "train", "max_records": 100000},
    test={"type": "ct0", "reader": "esnli", "path": "esnli/esnli", "split": "test"},
))
register(TaskSpec(
    name="hgen", kind="text", metric="rouge1", extra_metrics=["constraint_rate"], max_new_tokens=32,
    description="HGen: headline starting with / containing / ending with a keyword (gigaword); ROUGE-1 and "
                "the constraint rate",
    train={"type": "ct0", "reader": "gigaword", "path": "Harvard/gigaword", "split": "train", "max_records": 100000},
    test={"type": "ct0", "reader": "gigaword", "path": "Harvard/gigaword", "split": "test"},
))
