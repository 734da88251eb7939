"""What the fake server remembers between requests, per defect URL: its one-at-a-time engine.

Owns the engine lock (one generation at a time, like llama-cpp-python's server), the requests in
flight (the ``pinned_sampling`` defect hands a request the sampling parameters of one already in
flight), the running gauge behind ``/metrics``, and the wedge (``wedge<k>x<s>``: after answering
its k-th chat request the server stops answering anything for s seconds). Knows nothing about
HTTP rendering or generation.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SAMPLING", "UrlState", "state_for"]

SAMPLING = ("temperature", "top_p", "seed", "max_tokens", "max_completion_tokens", "stop")
WEDGE = re.compile(r"wedge(\d+)x(\d+)")


@dataclass
class UrlState:
    engine: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: list[dict[str, Any]] = field(default_factory=list)  # bodies of chat requests in progress
    running: int = 0  # requests generating (the engine lock held), an abandoned one included
    chat_requests: int = 0
    prompts: set[str] = field(default_factory=set)  # seen before: the pretend prefix cache
    wedged_until: float = 0.0

    def pinned(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the sampling parameters of the oldest request in flight, if any."""
        if not self.in_flight:
            return body
        first = self.in_flight[0]
        return {k: v for k, v in body.items() if k not in SAMPLING} | {
            k: first[k] for k in SAMPLING if k in first
        }

    async def wait_if_wedged(self) -> None:
        """A wedged server answers nothing until it recovers."""
        delay = self.wedged_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def answered_chat(self, defects: set[str]) -> None:
        self.chat_requests += 1
        for name in defects:
            m = WEDGE.fullmatch(name)
            if m and self.chat_requests == int(m.group(1)):
                self.wedged_until = time.monotonic() + int(m.group(2))

    def metrics(self, model: str) -> str:
        return (
            "# HELP fake:num_requests_running Requests generating.\n"
            "# TYPE fake:num_requests_running gauge\n"
            f'fake:num_requests_running{{model_name="{model}"}} {float(self.running)}\n'
        )


_STATES: dict[str, UrlState] = {}


def state_for(key: str) -> UrlState:
    """The state of one defect URL (``key`` is its defect segment), created on first use."""
    return _STATES.setdefault(key, UrlState())
