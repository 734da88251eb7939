"""Choice deltas to a Responses object: output items, and the stream events that build them.

One :class:`ResponseBuilder` folds the deltas of a generation's single choice into output items
(``reasoning``, ``message`` with ``output_text``, ``function_call``) in the order OpenAI emits
them. A streamed response renders each event as it happens; a JSON response runs the same fold
and keeps only the final object, so the two modes cannot disagree. Knows nothing of HTTP or of
the request beyond the response shell it is handed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

from reference.errors import APIError
from reference.protocol.choice import ChoiceDelta
from reference.protocol.streaming import CompletionMeta
from reference.responses.schemas import (
    ContentPartAdded,
    ContentPartDone,
    ErrorEvent,
    Event,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    FunctionCallItem,
    IncompleteDetails,
    InputTokensDetails,
    MessageItem,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputText,
    OutputTextDelta,
    OutputTextDone,
    ReasoningItem,
    ReasoningText,
    ReasoningTextDelta,
    ReasoningTextDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseObject,
    ResponseUsage,
)
from reference.schemas import encode

__all__ = ["ResponseBuilder", "collect_response", "response_events"]


class ResponseBuilder:
    """Folds one choice's deltas into ``response.output``; with ``streaming`` also renders the
    SSE frame of every event, numbered in order. A frame is encoded when its event happens, so
    it shows the response and its items as they were then."""

    def __init__(
        self,
        response: ResponseObject,
        meta: CompletionMeta,
        *,
        streaming: bool,
        on_done: Callable[[ResponseObject], None] | None = None,
    ) -> None:
        self.response = response
        self._meta = meta
        self._streaming = streaming
        self._on_done = on_done
        self._frames: list[bytes] = []
        self._seq = 0
        self._open: OutputItem | None = None
        self._tokens = 0

    # -- events ----------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        event.sequence_number = self._seq
        self._seq += 1
        if self._streaming:
            kind = str(type(event).__struct_config__.tag).encode()
            self._frames.append(b"event: " + kind + b"\ndata: " + encode(event) + b"\n\n")

    def frames(self) -> list[bytes]:
        out, self._frames = self._frames, []
        return out

    @property
    def _index(self) -> int:
        return len(self.response.output) - 1

    # -- items -----------------------------------------------------------------------------

    def _add(self, item: OutputItem) -> None:
        self._close()
        self.response.output.append(item)
        self._open = item
        self._emit(OutputItemAdded(output_index=self._index, item=item))

    def _part_added(self, item: OutputItem, part: OutputText | ReasoningText) -> None:
        self._emit(ContentPartAdded(item_id=item.id, output_index=self._index, content_index=0, part=part))

    def _message(self) -> MessageItem:
        """The open message item, opened (with its one ``output_text`` part) if need be."""
        if isinstance(self._open, MessageItem):
            return self._open
        item = MessageItem(id=f"msg_{uuid.uuid4().hex}", status="in_progress")
        self._add(item)
        part = OutputText("")
        self._part_added(item, part)
        item.content = [part]
        return item

    def _reasoning(self) -> ReasoningItem:
        """The open reasoning item, opened (with its one ``reasoning_text`` part) if need be."""
        if isinstance(self._open, ReasoningItem):
            return self._open
        item = ReasoningItem(id=f"rs_{uuid.uuid4().hex}", status="in_progress")
        self._add(item)
        part = ReasoningText("")
        self._part_added(item, part)
        item.content = [part]
        return item

    def _close(self, status: str = "completed") -> None:
        item, self._open = self._open, None
        if item is None:
            return
        index = self.response.output.index(item)
        item.status = status
        if isinstance(item, MessageItem):
            part = item.content[0]
            self._emit(
                OutputTextDone(
                    item_id=item.id,
                    output_index=index,
                    content_index=0,
                    text=part.text,
                    logprobs=part.logprobs,
                )
            )
            self._emit(ContentPartDone(item_id=item.id, output_index=index, content_index=0, part=part))
        elif isinstance(item, ReasoningItem):
            reasoning = item.content[0]
            self._emit(
                ReasoningTextDone(item_id=item.id, output_index=index, content_index=0, text=reasoning.text)
            )
            self._emit(ContentPartDone(item_id=item.id, output_index=index, content_index=0, part=reasoning))
        else:
            self._emit(
                FunctionCallArgumentsDone(
                    item_id=item.id, output_index=index, name=item.name, arguments=item.arguments
                )
            )
        self._emit(OutputItemDone(output_index=index, item=item))

    # -- the fold --------------------------------------------------------------------------

    def start(self) -> None:
        self._emit(ResponseCreated(response=self.response))
        self._emit(ResponseInProgress(response=self.response))

    def feed(self, d: ChoiceDelta) -> None:
        self._tokens += d.tokens
        thinking = d.reasoning
        if thinking:
            item = self._reasoning()
            item.content[0].text += thinking
            self._emit(
                ReasoningTextDelta(item_id=item.id, output_index=self._index, content_index=0, delta=thinking)
            )
        if d.text or (d.logprobs and not d.tool_calls):
            msg = self._message()
            part = msg.content[0]
            part.text += d.text
            part.logprobs.extend(d.logprobs)
            delta = OutputTextDelta(
                item_id=msg.id,
                output_index=self._index,
                content_index=0,
                delta=d.text,
                logprobs=list(d.logprobs),
            )
            self._emit(delta)
        for call in d.tool_calls:
            fn = call.function or {}
            if call.id is not None:
                name = fn.get("name", "")
                item_id = f"fc_{uuid.uuid4().hex}"
                self._add(
                    FunctionCallItem(
                        id=item_id, call_id=call.id, name=name, arguments="", status="in_progress"
                    )
                )
            args = fn.get("arguments", "")
            if args and isinstance(self._open, FunctionCallItem):
                self._open.arguments += args
                self._emit(
                    FunctionCallArgumentsDelta(item_id=self._open.id, output_index=self._index, delta=args)
                )
        if d.finish_reason is not None:
            self._finish(d.finish_reason)

    def _finish(self, finish_reason: str) -> None:
        r = self.response
        if not r.output:  # nothing generated at all: still one (empty) message, as clients expect
            self._message()
        incomplete = finish_reason == "length"
        self._close("incomplete" if incomplete else "completed")
        usage = self._meta.usage(self._tokens)
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        r.usage = ResponseUsage(
            usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, InputTokensDetails(cached)
        )
        if incomplete:
            r.status = "incomplete"
            r.incomplete_details = IncompleteDetails("max_output_tokens")
            self._emit(ResponseIncomplete(response=r))
        else:
            r.status, r.completed_at = "completed", int(time.time())
            self._emit(ResponseCompleted(response=r))
        if self._on_done is not None:
            self._on_done(r)

    def fail(self, exc: APIError) -> None:
        """The generation failed after the stream started: an ``error`` event, then ``response.failed``."""
        self._emit(ErrorEvent(code=exc.code, message=exc.message, param=exc.param))
        self._close("incomplete")
        r = self.response
        r.status = "failed"
        code = "rate_limit_exceeded" if exc.status_code == 429 else "server_error"
        r.error = ResponseError(code, exc.message)
        self._emit(ResponseFailed(response=r))
        if self._on_done is not None:
            self._on_done(r)


async def response_events(
    builder: ResponseBuilder, deltas: AsyncIterator[ChoiceDelta]
) -> AsyncIterator[bytes]:
    """The whole SSE body: ``event:`` and ``data:`` lines per event, no ``[DONE]`` (as OpenAI)."""
    builder.start()
    for frame in builder.frames():
        yield frame
    try:
        async for d in deltas:
            builder.feed(d)
            for frame in builder.frames():
                yield frame
    except APIError as exc:
        builder.fail(exc)
    for frame in builder.frames():
        yield frame


async def collect_response(builder: ResponseBuilder, deltas: AsyncIterator[ChoiceDelta]) -> ResponseObject:
    builder.start()
    async for d in deltas:
        builder.feed(d)
    return builder.response
