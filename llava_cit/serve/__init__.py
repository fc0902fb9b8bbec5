"""Answering queries with a trained run: routing, batched generation through gathered LoRA, the run server."""
