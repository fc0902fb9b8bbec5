"""The built-in tasks, one registration each."""

from llava_cit.prompts import GQA_SUFFIX
from llava_cit.tasks.registry import register
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
    train={"type": "llava", "path": "gqa_train_llava.json", "image_folder": "images"},
    test={"type": "hf", "path": "lmms-lab/GQA", "name": "testdev_balanced_instructions", "split": "testdev",
          "images": {"path": "lmms-lab/GQA", "name": "testdev_balanced_images", "split": "testdev"}},
    suffix=GQA_SUFFIX, normalizer="gqa", max_new_tokens=16,
))
register(TaskSpec(
    name="ocrvqa", description="OCR-VQA (Mishra et al. 2019) in LLaVA format; lower-case exact match",
    train={"type": "llava", "path": "ocrvqa_train_llava.json", "image_folder": "images"},
    test={"type": "llava", "path": "ocrvqa_test_llava.json", "image_folder": "images"},
    suffix=GQA_SUFFIX, normalizer="lower", max_new_tokens=16,
))
