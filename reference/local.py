"""The chat engine in process: OpenAI-shaped chat completions without a server.

``LocalChat("default").create(messages=[...])`` runs a request through the same pipeline as
``POST /v1/chat/completions`` (the same request schema and validation, the same generation and
the same stream chunks) and returns the ``openai`` package's own objects: a ``ChatCompletion``,
or an iterator of ``ChatCompletionChunk``. A bad request raises the server's :class:`APIError`
(its ``envelope()`` is the 4xx body the server would send). The engine needs an event loop: one
runs in a background thread for as long as the object lives. Knows nothing of HTTP.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import msgspec
from anyio.from_thread import BlockingPortal, start_blocking_portal
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from reference.errors import InvalidRequest
from reference.generation import Generation, leased, start
from reference.protocol.streaming import chunks, collect
from reference.registry import Registry
from reference.schemas import ChatCompletionRequest
from reference.settings import Settings

__all__ = ["LocalChat"]


class LocalChat:
    """One model (a preset, its alias, a model directory or a .gguf file), loaded in this process."""

    def __init__(self, model: str = "default", *, settings: Settings | None = None) -> None:
        self._settings = settings or Settings(models=(model,))
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
        self._registry: Registry = self._settings.build_registry()
        self._stack.callback(self._registry.close)
        try:
            self._portal.call(self._registry.start, True)  # loads the first model now
        except BaseException:
            self.close()
            raise
        self.model = self._registry.sources()[0].id

    def close(self) -> None:
        """Stop the engine and its event loop; further calls fail."""
        self._stack.close()

    def __enter__(self) -> LocalChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(
        self, *, messages: list[dict[str, Any]], stream: bool = False, **params: Any
    ) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """A chat completion, as ``client.chat.completions.create`` takes and returns it.

        ``model`` defaults to this object's model; every other field is the chat API's.
        """
        req = _request({"model": self.model, **params, "messages": messages, "stream": stream})
        gen = self._portal.call(leased, self._registry, req.model, lambda served: start(req, served))
        if not req.stream:
            done = self._portal.call(_finished, gen)
            return ChatCompletion.model_validate(msgspec.to_builtins(done))
        return self._chunks(gen)

    def _chunks(self, gen: Generation) -> Iterator[ChatCompletionChunk]:
        stream = chunks(gen.meta, gen.deltas)
        try:
            while True:
                try:
                    c = self._portal.call(_next, stream)
                except StopAsyncIteration:
                    return
                yield ChatCompletionChunk.model_validate(msgspec.to_builtins(c))
        finally:  # also when the caller stops reading: the engine drops the sequences
            gen.cancel()
            self._portal.call(_close, stream)


def _request(body: dict[str, Any]) -> ChatCompletionRequest:
    """The body as the server decodes it: the same types, ranges and required fields."""
    try:
        return msgspec.convert(body, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        path = str(exc).rpartition(" - at `$.")[2].rstrip("`")
        raise InvalidRequest(str(exc), param=path if path != str(exc) else None) from None


async def _finished(gen: Generation) -> Any:
    try:
        return await collect(gen.meta, gen.deltas)
    finally:
        gen.cancel()


async def _next(stream: AsyncIterator[Any]) -> Any:
    return await anext(stream)


async def _close(stream: AsyncIterator[Any]) -> None:
    if isinstance(stream, AsyncGenerator):
        await stream.aclose()
