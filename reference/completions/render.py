"""Choice deltas to legacy ``text_completion`` objects: one JSON body or SSE chunks.

Owns ``echo`` (the prompt before the completion, and its scored tokens before the generated
ones), the legacy ``logprobs`` shape (``tokens``, ``token_logprobs``, ``top_logprobs``,
``text_offset``) and the stream framing, which is chat's: ``data:`` chunks, an optional usage
chunk, ``[DONE]``. Both modes fold the same deltas through :class:`_ChoiceText`. Knows nothing
of HTTP or of the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from reference.completions.prompts import CompletionRun
from reference.completions.schemas import Completion, CompletionChoice, CompletionLogprobs
from reference.errors import APIError, GenerationError
from reference.protocol.choice import ChoiceDelta
from reference.schemas import TokenLogprob, encode

__all__ = ["collect_completion", "completion_events"]


@dataclass
class _ChoiceText:
    """One choice's text and logprobs as they come, echo first; ``offset`` runs through its text."""

    run: CompletionRun
    index: int
    started: bool = False
    offset: int = 0
    tokens: int = 0
    text: str = ""
    logprobs: CompletionLogprobs = field(default_factory=lambda: CompletionLogprobs([], [], [], []))

    def _add(
        self, lp: CompletionLogprobs, token: str, logprob: float | None, top: dict[str, float] | None
    ) -> None:
        lp.tokens.append(token)
        lp.token_logprobs.append(logprob)
        lp.top_logprobs.append(top)
        lp.text_offset.append(self.offset)
        self.offset += len(token)

    def _scored(self, lp: CompletionLogprobs, entries: list[TokenLogprob]) -> None:
        for e in entries:
            self._add(
                lp, e.token, e.logprob, {t.token: t.logprob for t in e.top_logprobs} | {e.token: e.logprob}
            )

    def piece(self, d: ChoiceDelta) -> tuple[str, CompletionLogprobs]:
        """The text this delta adds to the choice, and its tokens' logprobs."""
        text, lp = "", CompletionLogprobs([], [], [], [])
        echo = self.run.echo
        if not self.started and echo is not None:
            prompt = self.index // self.run.per_prompt
            text = echo.texts[prompt]
            if self.run.generation.meta.logprobs:
                self._add(lp, echo.first_tokens[prompt], None, None)
                self._scored(lp, d.prompt_logprobs)
            self.offset = len(text)  # the prompt's token pieces need not add up to its text
        self.started = True
        if not self.run.score_only:
            text += d.text
            self._scored(lp, d.logprobs)
            self.tokens += d.tokens
        self.text += text
        for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
            getattr(self.logprobs, key).extend(getattr(lp, key))
        return text, lp

    def finish(self, reason: str | None) -> str | None:
        return "length" if reason is not None and self.run.score_only else reason


async def collect_completion(run: CompletionRun, deltas: AsyncIterator[ChoiceDelta]) -> Completion:
    meta = run.generation.meta
    choices = [_ChoiceText(run, i) for i in range(meta.n)]
    finish: list[str | None] = [None] * meta.n
    async for d in deltas:
        choices[d.index].piece(d)
        if d.finish_reason is not None:
            finish[d.index] = choices[d.index].finish(d.finish_reason)
    if any(f is None for f in finish):
        raise GenerationError("generation ended without a finish reason")
    out = [
        CompletionChoice(c.text, c.index, c.logprobs if meta.logprobs else None, finish[c.index])
        for c in choices
    ]
    completion = Completion(meta.id, meta.created, meta.model, out)
    completion.usage = meta.usage(sum(c.tokens for c in choices))
    return completion


async def completion_events(run: CompletionRun, deltas: AsyncIterator[ChoiceDelta]) -> AsyncIterator[bytes]:
    """The whole event stream, ``[DONE]`` included; an error mid-stream becomes an error event."""
    meta = run.generation.meta
    choices = [_ChoiceText(run, i) for i in range(meta.n)]

    def chunk(items: list[CompletionChoice]) -> Completion:
        return Completion(meta.id, meta.created, meta.model, items)

    try:
        async for d in deltas:
            c = choices[d.index]
            text, lp = c.piece(d)
            reason = c.finish(d.finish_reason)
            if text or lp.tokens or reason is not None:
                item = CompletionChoice(text, d.index, lp if meta.logprobs else None, reason)
                yield b"data: " + encode(chunk([item])) + b"\n\n"
    except APIError as exc:
        yield b"data: " + encode(exc.envelope()) + b"\n\n"
        yield b"data: [DONE]\n\n"
        return
    if meta.include_usage:
        last = chunk([])
        last.usage = meta.usage(sum(c.tokens for c in choices))
        yield b"data: " + encode(last) + b"\n\n"
    yield b"data: [DONE]\n\n"
