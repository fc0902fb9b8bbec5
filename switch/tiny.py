"""Tiny offline models built from configs, with a word-level tokenizer built in code.

Used by tests and the demo where no pretrained weights can be downloaded. Nothing
here touches the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
WORD_PATTERN = r"\w+|[^\w\s]"  # a word or one punctuation mark
DECIMAL_WORD_PATTERN = r"\d+\.\d+|\w+|[^\w\s]"  # also a decimal number as one piece ("0.44": box coordinates)


def words_of(texts: Iterable[str], pattern: str = WORD_PATTERN) -> list[str]:
    """Lower-cased word and punctuation pieces, in first-seen order (the tokenizer's split)."""
    split = re.compile(pattern)
    seen: dict[str, None] = {}
    for text in texts:
        for special in SPECIAL_TOKENS:
            text = text.replace(special, " ")
        for piece in split.findall(text.lower()):
            seen.setdefault(piece, None)
    return list(seen)


def build_word_tokenizer(words: Iterable[str], model_max_length: int = 512,
                         pattern: str = WORD_PATTERN) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over `words` (lower-cased), specials first, unknown words -> <unk>; `pattern` splits
    the text into pieces (words_of must split the vocabulary with the same one)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        word = word.lower()
        if word not in vocab:
            vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(pattern), behavior="isolated")]
    )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer


def tiny_opt(words: Iterable[str], hidden: int = 64, layers: int = 2, seed: int = 0):
    """A randomly initialised 2-layer OPT with a word tokenizer: the switch's offline extractor."""
    tokenizer = build_word_tokenizer(words)
    config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        word_embed_proj_dim=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        ffn_dim=hidden * 4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = OPTForCausalLM(config)
    model.eval()
    return model, tokenizer
