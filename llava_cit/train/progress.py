"""The console's one display of a training phase: a rich bar of optimizer steps, like evaluation's, in place of
the Trainer's own tqdm bar and printed log dicts (`disable_tqdm`, no PrinterCallback)."""

from __future__ import annotations

from transformers import TrainerCallback

from llava_cit.util.progress_display import ItemProgress


class TrainingBar(TrainerCallback):
    """Steps done / total (a resumed stage starts at its checkpoint's step), rate and ETA, on `console`."""

    def __init__(self, console):
        self.console = console
        self._bar: ItemProgress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        label = f"training {args.run_name}" if args.run_name else "training"
        self._bar = ItemProgress(label, state.max_steps, self.console).__enter__()
        if state.global_step:
            self._bar.advance(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.advance(state.global_step - self._bar.done)

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
