"""Training: the LoRA/full trainer, its progress bar, stage-1 pre-training, processes, ZeRO-3 weights, memory planning."""
