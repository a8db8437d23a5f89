"""An exponential moving average of the weights (Polyak averaging), updated after every optimizer step:
what the validation bound is measured on, what early stopping keeps, and what model.pt serves when
``TrainConfig.ema`` is set. The raw weights keep training underneath."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """avg <- avg + (1 - d) * (w - avg) after each step, with d = min(decay, (1 + n) / (10 + n)) at step n,
    so that the first steps are not dominated by the initial weights; integer buffers are copied."""

    def __init__(self, model: nn.Module, decay: float, state: dict | None = None):
        self.decay = decay
        self.steps = int(state["steps"]) if state else 0
        source = state["state_dict"] if state else model.state_dict()
        device = next(model.parameters()).device
        self.average = {k: v.detach().to(device).clone() for k, v in source.items()}
        live = model.state_dict()
        floats = [k for k in self.average if live[k].is_floating_point()]
        self._averages, self._weights = [self.average[k] for k in floats], [live[k] for k in floats]
        self._copied = [(self.average[k], live[k]) for k in self.average if not live[k].is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights in (call after ``optimizer.step()``)."""
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        torch._foreach_lerp_(self._averages, self._weights, 1.0 - decay)
        for average, weight in self._copied:
            average.copy_(weight)

    @contextmanager
    def applied(self, model: nn.Module):
        """The averaged weights in ``model`` inside the block, its own ones restored after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.average)
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def weights(self) -> dict:
        """A CPU copy of the averaged weights (a state dict)."""
        return {k: v.detach().cpu().clone() for k, v in self.average.items()}

    def state(self) -> dict:
        """What model.pt keeps for --resume: the averaged weights and the step count."""
        return {"state_dict": self.weights(), "steps": self.steps}
