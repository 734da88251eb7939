"""One request's metrics, observed on its choice deltas: tokens, latencies, finish reasons.

Both response modes (SSE and JSON) are rendered from the same delta stream, so wrapping that
stream once counts exactly what ``usage`` reports in either mode: the prompt once per request,
and the sum of the deltas' ``tokens`` as generated tokens. A "request" in the per-request metrics
is one sequence, i.e. one choice (``n`` of them per HTTP request), as an engine request is in
vLLM; the finish reason belongs to a choice, so nothing else could label it.

Times are ``time.perf_counter()`` readings. ``arrival`` is when the route handler got the decoded
request; ``submitted`` is when its sequences were queued in the engine. Knows nothing of HTTP or
of the engine: the route hands in the delta stream and the two times.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from reference.metrics import families as m
from reference.protocol.choice import ChoiceDelta

__all__ = ["RequestObservation"]


class RequestObservation:
    """Created once a request's sequences are submitted; ended once, however the request ends."""

    def __init__(self, model: str, prompt_tokens: int, n: int, arrival: float, submitted: float) -> None:
        self.model = model
        self.arrival = arrival
        self._last: list[float | None] = [None] * n  # each choice's previous delta
        self._finished = [False] * n
        self._ended = False
        m.PROMPT_TOKENS.labels(model).inc(prompt_tokens)
        queue = m.QUEUE_TIME.labels(model)
        for _ in range(n):  # once per choice, like every other per-request histogram
            queue.observe(max(0.0, submitted - arrival))

    def delta(self, d: ChoiceDelta) -> None:
        now = time.perf_counter()
        model = self.model
        previous = self._last[d.index]
        if previous is None:
            m.TIME_TO_FIRST_TOKEN.labels(model).observe(now - self.arrival)
        elif d.tokens:
            # A delta can carry several tokens (held back for a multi-byte character or a possible
            # stop string); spreading the gap keeps sum/count the true mean per-token latency.
            share = (now - previous) / d.tokens
            itl = m.INTER_TOKEN_LATENCY.labels(model)
            for _ in range(d.tokens):
                itl.observe(share)
        self._last[d.index] = now
        if d.tokens:
            m.GENERATION_TOKENS.labels(model).inc(d.tokens)
        if d.finish_reason is not None and not self._finished[d.index]:
            self._finished[d.index] = True
            self._end_choice(d.finish_reason, now)

    def end(self, reason: str = "abort") -> None:
        """Every choice without a finish reason yet ends now, with ``reason``; later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        now = time.perf_counter()
        for i, finished in enumerate(self._finished):
            if not finished:
                self._finished[i] = True
                self._end_choice(reason, now)

    def _end_choice(self, reason: str, now: float) -> None:
        m.REQUEST_SUCCESS.labels(self.model, reason).inc()
        m.E2E_LATENCY.labels(self.model).observe(now - self.arrival)

    async def wrap(self, deltas: AsyncIterator[ChoiceDelta]) -> AsyncIterator[ChoiceDelta]:
        """``deltas`` unchanged, observed on the way through."""
        reason = "abort"  # cancelled, or closed by a consumer that stopped reading
        try:
            async for d in deltas:
                self.delta(d)
                yield d
            reason = "error"  # the stream ran out with a choice unfinished: generation went wrong
        except Exception:
            reason = "error"
            raise
        finally:
            self.end(reason)
