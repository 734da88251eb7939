"""What the load benchmark sends: chat requests, their seeded order and their request bodies.

Owns the built-in prompt set's use, reading a ``--dataset`` JSONL file, and turning the i-th
request of a run into one streamed OpenAI chat-completions body (``stream: true`` with
``stream_options.include_usage``). Knows nothing of HTTP, timing or metrics.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perf.load.prompts import BUILTIN_PROMPTS

__all__ = ["ChatRequest", "Workload", "builtin_workload", "dataset_workload"]

# Keys the benchmark owns: a dataset line may not turn streaming off or pick another model.
_FIXED_KEYS = frozenset({"model", "stream", "stream_options", "messages"})


@dataclass(frozen=True)
class ChatRequest:
    """One chat request: its messages and any per-request parameters (e.g. ``max_tokens``)."""

    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """A seeded sequence of chat requests plus the defaults every body gets.

    ``max_tokens`` and ``temperature`` apply where a request's own ``params`` leave them out.
    Request ``i`` of a run is ``requests[order[i % len(order)]]``, so any number of requests
    can be drawn and the same seed always gives the same sequence.
    """

    name: str
    requests: tuple[ChatRequest, ...]
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError(f"workload {self.name!r} has no requests")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not self.order:
            order = list(range(len(self.requests)))
            random.Random(self.seed).shuffle(order)
            object.__setattr__(self, "order", tuple(order))

    def request(self, i: int) -> ChatRequest:
        return self.requests[self.order[i % len(self.order)]]

    def body(self, i: int, model: str) -> dict[str, Any]:
        """The JSON body of request ``i``: a streamed chat completion that reports usage."""
        req = self.request(i)
        extra = {k: v for k, v in req.params.items() if k not in _FIXED_KEYS}
        return {
            "model": model,
            "messages": req.messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            **extra,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def describe(self) -> dict[str, Any]:
        """The workload parameters as recorded in the result document."""
        return {
            "name": self.name,
            "requests_in_set": len(self.requests),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }


def builtin_workload(max_tokens: int = 64, temperature: float = 0.0, seed: int = 0) -> Workload:
    """The built-in prompts, one user message each, in an order fixed by ``seed``."""
    reqs = tuple(ChatRequest([{"role": "user", "content": p}]) for p in BUILTIN_PROMPTS)
    return Workload("builtin", reqs, max_tokens, temperature, seed)


def _parse_line(number: int, line: str, path: Path) -> ChatRequest:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
    messages = obj.get("messages") if isinstance(obj, dict) else None
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"{path}:{number}: needs a non-empty 'messages' list of objects")
    return ChatRequest(messages, {k: v for k, v in obj.items() if k != "messages"})


def dataset_workload(path: Path, max_tokens: int = 64, temperature: float = 0.0, seed: int = 0) -> Workload:
    """Requests from a JSONL file: one ``{"messages": [...], ...params}`` object per line.

    A line's own parameters (``max_tokens``, ``temperature``, ...) win over the defaults;
    ``model``, ``stream`` and ``stream_options`` are always the benchmark's.
    """
    lines: Sequence[str] = path.read_text(encoding="utf-8").splitlines()
    reqs = tuple(_parse_line(n, line, path) for n, line in enumerate(lines, 1) if line.strip())
    return Workload(path.name, reqs, max_tokens, temperature, seed)
