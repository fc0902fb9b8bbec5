"""A short generic pre-training of a tiny, randomly initialised base (LLaVA's stage-1 analogue).

LoRA on a random base learns poorly, so the demo first teaches the tiny model to caption the
synthetic images (full fine-tuning; or, `pretrain.train: vision`, only the vision tower and projector under a
pretrained, frozen language model, as LLaVA's stage 1 trains its projector), then freezes it. The result is cached on disk, keyed by
everything that determines it, and reused by later runs. Each process builds it in a staging folder of its own
(two processes pre-training the same key never share one); the first to publish it wins, and the other's copy,
the same by its key, goes.
"""

from __future__ import annotations

import hashlib
import json
import shutil

from transformers import PrinterCallback, Trainer

from llava_cit.config import RunConfig, TrainSettings
from llava_cit.data.collation import Encoder, TrainCollator
from llava_cit.data.sources import load_source
from llava_cit.models.loading import LoadedModel, load_model
from llava_cit.models.packaged import cache_root
from llava_cit.models.vision_parts import vision_parts
from llava_cit.train.distributed import Processes
from llava_cit.train.trainer import ListDataset, training_arguments
from llava_cit.util.atomic import own_staging_dir, publish_cache_entry

CACHE_VERSION = 2  # 2: tiny-bloom vocabulary and the text template changed


def pretrained_base(config: RunConfig, say=lambda text: None) -> LoadedModel:
    p = config.pretrain
    settings = {k: v for k, v in vars(p).items() if not (k == "train" and v == "all")}  # older keys stay valid
    identity = {"v": CACHE_VERSION, "model": config.model, "pretrain": settings, "seed": config.seed}
    if config.prompt_format != "auto":
        identity["prompt_format"] = config.prompt_format
    key = json.dumps(identity, sort_keys=True)
    target = cache_root() / "pretrained" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (target / "model.safetensors").is_file():
        say(f"using the cached pre-trained base {target}")
        return load_model(str(target), config.dtype, config.device_map, config.load_in_4bit)
    say(f"pre-training the {config.model} base on {p.examples} '{p.task}' examples (cached afterwards)")
    loaded = load_model(config.model, config.dtype, seed=config.seed)
    examples = load_source({"type": "synthetic", "generator": p.task, "count": p.examples}, p.task, "train",
                           seed=config.seed)
    encoder = Encoder(loaded, max_length=config.train.max_length, prompt_format=config.prompt_format)
    if p.train == "vision":
        parts = vision_parts(loaded.model)
        for name, param in loaded.model.named_parameters():
            param.requires_grad = parts is not None and parts.part_of(name) in ("vision", "projector")
    settings = TrainSettings(epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, scheduler="cosine",
                             warmup_ratio=0.05, save_steps=10**9)
    processes = Processes()  # under accelerate launch: every rank trains, rank 0 writes
    staging = own_staging_dir(target)
    try:
        args = training_arguments(settings, staging / "trainer", config.seed, progress=False)
        trainer = Trainer(model=loaded.model, args=args, train_dataset=ListDataset(examples, encoder),
                          data_collator=TrainCollator(encoder.tokenizer.pad_token_id))
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        loaded.model.eval()

        def publish():
            shutil.rmtree(staging / "trainer", ignore_errors=True)
            loaded.model.save_pretrained(staging)
            loaded.processor.save_pretrained(staging)
            publish_cache_entry(staging, target, "model.safetensors")

        processes.on_main(publish)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone once published; a failed or other rank's copy goes too
    return load_model(str(target), config.dtype, config.device_map, config.load_in_4bit)
