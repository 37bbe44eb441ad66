"""The four memory cores of chapter 7, behind one small interface.

Why: `MemoryPolicy` must treat the card's `StateSpaceModel`, the diagonal SSM stack, a
GRU and an LSTM alike. Each core maps a (B, T, width) sequence to a (B, T, width) one
and carries one flat float32 state per row that starts at zeros: `run(x, state,
resets)` for a whole sequence, `step(x, state)` for one step while acting. The
nonlinear cells have no scan, so a sequence with episode boundaries runs as pieces
between them; the diagonal stack restarts inside its scan. Taught in chapter 7
("which memory?").
"""

from __future__ import annotations

import torch
from torch import nn

from ..io.validation import check_choice, check_int
from .diagonal_stack import DiagonalSSMStack
from .ssm import StateSpaceModel

__all__ = ["MEMORY_CORES", "memory_core"]

#: The memories chapter 7 compares.
MEMORY_CORES = ("card_ssm", "diag_ssm", "gru", "lstm")


class _LoopCore(nn.Module):
    """A nonlinear cell run step by step; a sequence with resets runs as pieces
    between the columns where some row resets, each piece in one fused call."""

    state_size: int

    def run(self, x, state=None, resets=None):
        if state is None:
            state = x.new_zeros(x.shape[0], self.state_size)
        if resets is None:
            return self._run(x, state)
        starts = resets.any(dim=0)
        starts[0] = True
        cols = starts.nonzero()[:, 0].tolist()
        lengths = [end - col for col, end in zip(cols, cols[1:] + [x.shape[1]])]
        outputs = []
        # split, not x[:, a:b]: slices in a loop make backward quadratic in T
        for col, piece in zip(cols, x.split(lengths, dim=1)):
            state = state.masked_fill(resets[:, col, None], 0.0)
            y, state = self._run(piece, state)
            outputs.append(y)
        return torch.cat(outputs, dim=1), state

    def step(self, x, state):
        y, state = self._run(x[:, None], state)
        return y[:, 0], state


class _CardCore(_LoopCore):
    """The card's cell with input, state and output of size `width` and MLPs twice as
    wide, the card's 32:64 ratio."""

    def __init__(self, width: int):
        super().__init__()
        self.cell, self.state_size = (
            StateSpaceModel(width, width, width, 2 * width),
            width,
        )

    def _run(self, x, state):
        return self.cell.outputs(x, hidden=state)

    def step(self, x, state):
        return self.cell.step(x, state)


class _GRUCore(_LoopCore):
    """`torch.nn.GRU`, one layer; its state is h."""

    def __init__(self, width: int):
        super().__init__()
        self.rnn, self.state_size = nn.GRU(width, width, batch_first=True), width

    def _run(self, x, state):
        y, h = self.rnn(x, state[None].contiguous())
        return y, h[0]


class _LSTMCore(_LoopCore):
    """h and c side by side in one state tensor."""

    def __init__(self, width: int):
        super().__init__()
        self.rnn, self.state_size = nn.LSTM(width, width, batch_first=True), 2 * width

    def _run(self, x, state):
        h, c = (part[None].contiguous() for part in state.chunk(2, dim=-1))
        y, (h, c) = self.rnn(x, (h, c))
        return y, torch.cat([h[0], c[0]], dim=-1)


def memory_core(core: str, width: int, layers: int = 2, seed: int = 0) -> nn.Module:
    """A fresh core `core` (one of `MEMORY_CORES`) of width `width` with `.run`,
    `.step` and `.state_size`, its weights drawn from `seed` alone. `layers` is the
    depth of the `"diag_ssm"` stack. The card's cell gets input, state and output
    `width` and MLPs `2 * width` wide. Defined in chapter 7.
    """
    check_choice("core", core, MEMORY_CORES)
    width, seed = check_int("width", width), check_int("seed", seed, minimum=0)
    if core == "diag_ssm":
        return DiagonalSSMStack(width, layers=layers, seed=seed)
    # torch.nn draws its initial weights from the global generator: fork it
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {"card_ssm": _CardCore, "gru": _GRUCore, "lstm": _LSTMCore}[core](width)
