"""The caller's side of one sequence: an async iterator of its events, and a cancel switch.

The engine's worker thread posts events with ``call_soon_threadsafe``; the event loop reads
them. Knows nothing of how the sequence is scheduled or computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable

from reference.engine.types import EngineFailure, PromptLogprobs, TokenEvent

__all__ = ["SequenceHandle"]

_DONE = object()


class SequenceHandle:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._cancelled = threading.Event()
        self.cached_tokens = 0  # prompt tokens reused from the prefix cache, set on admission
        self._on_close: Callable[[], None] | None = None
        self._closed = False
        self._lock = threading.Lock()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def post(self, item: TokenEvent | PromptLogprobs | EngineFailure) -> None:
        self._put(item)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop once the engine is done with this sequence
        (at once if it already is)."""
        with self._lock:
            self._on_close, closed = callback, self._closed
        if closed:
            self._call(callback)

    def close(self) -> None:
        """No more events: the iterator ends, and the ``on_close`` callback runs."""
        self._put(_DONE)
        with self._lock:
            self._closed, callback = True, self._on_close
        if callback is not None:
            self._call(callback)

    def _call(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: so is whoever cared
            self._loop.call_soon_threadsafe(callback)

    def _put(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (shutdown): nobody is listening any more
            self._cancelled.set()

    async def __aiter__(self) -> AsyncIterator[TokenEvent | PromptLogprobs | EngineFailure]:
        while True:
            item = await self._queue.get()
            if item is _DONE:
                return
            assert isinstance(item, TokenEvent | PromptLogprobs | EngineFailure)
            yield item
