"""The text generation loop's parts: one ``decoder_step`` call per character on arrays bound to the session
once per thread and batch size, and the next character picked by a few numpy calls that write into
arrays made once. numpy + onnxruntime only.

Why bound arrays: at batch 1 the step graph of a GRU-128 decoder took onnxruntime ~34 us through
``session.run`` (which converts the feed and allocates the outputs each call) and ~25 us on bound arrays,
with the state going back and forth between two of them (docs/text.md, "Generation speed").

The draw (the same in every runtime; runtime/rng.py gives the uniforms): one uniform u in [0, 1) per line
and character position, and the character is the first id whose cumulative softmax(logits / T) mass,
over the top k, exceeds u times the total mass (<pad> and <bos> excluded).
"""

from __future__ import annotations

import numpy as np

from .sessions import BoundCall, Graph
from .vocab import BOS, EOS

FIRST = BOS + 1  # the first id that may be generated: <pad> (0) and <bos> (1) never are


class Stepper:
    """One thread's ``decoder_step`` at one batch size, and the arrays its loop reads and writes.

    Fill ``z``, ``token`` and ``states[0]``, then per step ``t``: :meth:`step` (reads ``states[t % 2]``,
    writes ``states[(t + 1) % 2]`` and ``logits``), then :meth:`greedy` or :meth:`draw` (write ``token``).
    """

    def __init__(self, graph: Graph, n: int, latent: int, hidden: int, vocab_size: int):
        self.z = np.zeros((n, latent), np.float32)
        self.token = np.zeros(n, np.int64)
        self.states = (np.zeros((n, hidden), np.float32), np.zeros((n, hidden), np.float32))
        self.logits = np.zeros((n, vocab_size), np.float32)
        width = vocab_size - FIRST
        self._one = n == 1
        self._row = self.logits[0, FIRST:]
        self._work, self._scratch = np.empty((n, width)), np.empty((n, width))
        self._mask = np.empty((n, width), bool)
        self._mass = np.zeros((n, vocab_size))  # cumulative; columns <pad> and <bos> stay 0
        self._below = np.empty((n, vocab_size), bool)
        self._threshold = np.empty(n)
        self._flat = self._work[0]
        self.ended, self.done = np.empty(n, bool), np.empty(n, bool)
        self._graph = graph
        self._calls: list[BoundCall] | None = None
        if graph.can_bind:
            self._calls = [graph.bind({"z": self.z, "token": self.token, "state": self.states[i]},
                                      {"logits": self.logits, "next_state": self.states[1 - i]}) for i in (0, 1)]
            run, even, options = self._calls[0].parts()
            self._parts = (run, even, self._calls[1].parts()[1], options)  # for run_one: run(even or odd binding, options)

    def step(self, t: int) -> None:
        """decoder_step on ``z``, ``token`` and ``states[t % 2]``.

        Raises:
            RuntimeError: onnxruntime failed; one line naming the graph.
        """
        if self._calls is not None:
            self._calls[t & 1]()
            return
        logits, state = self._graph.run({"z": self.z, "token": self.token, "state": self.states[t & 1]})
        np.copyto(self.logits, logits)
        np.copyto(self.states[1 - (t & 1)], state)

    def greedy(self) -> None:
        """``token`` = the most likely id of each row."""
        if self._one:
            self.token[0] = self._row.argmax() + FIRST
            return
        np.argmax(self.logits[:, FIRST:], axis=1, out=self.token)
        self.token += FIRST

    def draw(self, u: np.ndarray, temperature: float, top_k: int | None) -> None:
        """``token`` = a draw per row from softmax(logits / temperature) over the ``top_k`` most likely ids
        (None: all), by inverting the cumulative mass at ``u`` (n,) uniforms in [0, 1).

        The cumulative mass has <pad> and <bos> as two leading zeros, so the count of entries at or
        below u x total is the drawn id itself; u < 1 keeps it below the vocabulary size (u x total
        rounds below the total for any u <= 1 - 2**-53).
        """
        if self._one and top_k is None:
            self._draw_one(float(u[0]), temperature)
            return
        w, mass = self._work, self._mass
        width = w.shape[1]
        np.subtract(self.logits[:, FIRST:], np.maximum.reduce(self.logits[:, FIRST:], axis=1, keepdims=True), out=w)
        if temperature != 1:
            np.divide(w, temperature, out=w)
        if top_k is not None and top_k < width:
            np.copyto(self._scratch, w)
            self._scratch.partition(width - top_k, axis=1)  # in place: column width - k holds the k-th largest
            np.less(w, self._scratch[:, width - top_k : width - top_k + 1], out=self._mask)
            np.copyto(w, -np.inf, where=self._mask)
        np.exp(w, out=w)
        np.add.accumulate(w, axis=1, out=mass[:, FIRST:])
        if self._one:
            self.token[0] = mass[0].searchsorted(u[0] * mass[0, -1], side="right")
            return
        np.multiply(u, mass[:, -1], out=self._threshold)
        np.less_equal(mass, self._threshold[:, None], out=self._below)
        np.add.reduce(self._below, axis=1, out=self.token)

    def _draw_one(self, u: float, temperature: float) -> None:
        """:meth:`draw` at batch 1 over every id, the interactive case: the same arithmetic on one row,
        in half the numpy calls (a search in place of a compare and a count)."""
        w = self._flat
        np.subtract(self._row, self._row.max(), out=w)
        if temperature != 1:
            np.divide(w, temperature, out=w)
        np.exp(w, out=w)
        np.add.accumulate(w, out=w)
        self.token[0] = w.searchsorted(u * w[-1], side="right") + FIRST

    def run_one(self, z: np.ndarray, max_len: int, temperature: float, top_k: int | None, u: np.ndarray | None) -> list[int]:
        """:meth:`run` at batch 1 (a Stepper made for n = 1): the ids of the line, up to its <eos> (not
        included), from ``z`` (1, latent) and ``u`` (1, max_len) or None.

        The same steps and the same arithmetic as :meth:`step` then :meth:`greedy` or :meth:`draw`, written
        out in one loop: the interactive case, where a line of ~8 characters took ~300 us of which the
        step graph ~130 (docs/text.md, "Generation speed") and method calls, out-array writes and
        per-step numpy scalars much of the rest.

        Raises:
            RuntimeError: onnxruntime failed; one line naming the graph.
        """
        if self._calls is None or top_k is not None:  # no binding, or top-k's partition: the general pick
            row = self.run(z, max_len, temperature, top_k, u)[0]
            ends = np.flatnonzero(row == EOS)
            return row[: ends[0] if len(ends) else max_len].tolist()
        np.copyto(self.z, z)
        token = self.token
        token[0] = BOS
        self.states[0].fill(0.0)  # decoder_step ignores the state at <bos>; zeros keep the buffers clean
        run, even, odd, options = self._parts
        row, w = self._row, self._flat
        draws = None if u is None else u[0].tolist()  # Python floats: u x total as draw() computes it
        scaled = temperature != 1
        subtract, maximum, divide, exp, accumulate = np.subtract, np.maximum.reduce, np.divide, np.exp, np.add.accumulate
        ids = []
        for t in range(max_len):
            try:
                run(odd if t & 1 else even, options)
            except MemoryError:
                raise
            except Exception as exc:  # onnxruntime's own exception types derive from Exception only
                raise self._calls[0].failed(exc) from None
            if draws is None:
                k = int(row.argmax()) + FIRST
            else:  # _draw_one's arithmetic, bit for bit
                subtract(row, maximum(row), w)
                if scaled:
                    divide(w, temperature, w)
                exp(w, w)
                accumulate(w, 0, None, w)
                k = int(w.searchsorted(draws[t] * w[-1], "right")) + FIRST
            token[0] = k
            if k == EOS:
                break
            ids.append(k)
        return ids

    def run(self, z: np.ndarray, max_len: int, temperature: float, top_k: int | None, u: np.ndarray | None) -> np.ndarray:
        """Ids (n, max_len) generated from ``z``, <eos>-filled after each row's end; greedy where ``u`` is None,
        else drawn with ``u`` (n, max_len) uniforms, one per position."""
        n = len(z)
        np.copyto(self.z, z)
        self.token.fill(BOS)
        self.states[0].fill(0.0)  # decoder_step ignores the state at <bos>; zeros keep the buffers clean
        out = np.full((n, max_len), EOS, dtype=np.int64)
        done, ended = self.done, self.ended
        done.fill(False)
        for t in range(max_len):
            self.step(t)
            if u is None:
                self.greedy()
            else:
                self.draw(u[:, t], temperature, top_k)
            out[:, t] = self.token
            if self._one:
                if self.token[0] == EOS:
                    break
                continue
            np.equal(self.token, EOS, out=ended)
            np.logical_or(done, ended, out=done)
            if done.all():
                break
        return out
