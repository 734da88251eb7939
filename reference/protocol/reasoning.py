"""Reasoning split from the answer: the ``<think>…</think>`` block DeepSeek-R1 and Qwen3 write.

A :class:`ReasoningParser` takes generated text as it is released (after stop strings) and
returns ``(reasoning, content)`` pieces. The split does not depend on how the text was cut
into deltas: text that could still become a tag (``</thi``) is held back until it is known,
and whitespace next to the tags is held until it is known to be inside the thoughts. The
reasoning is the block's text without the tags and the whitespace around it; the content is
what follows the closing tag, leading whitespace dropped (as llama.cpp's server does). Tool
calls and structured output then apply to the content alone.

Where the chat template already opened the block (the rendered prompt ends with ``<think>``,
as DeepSeek-R1's and Qwen3-Thinking's templates do), the output starts inside the thoughts;
otherwise a block counts only at the very start of the output, and text without one is all
content. A closing tag that never comes leaves everything after the opening one as reasoning
(generation cut by ``max_tokens``). The tags must reach the detokenizer as text: they are
plain (non-special) tokens in Qwen3's and DeepSeek-R1's tokenizers.

Knows nothing of HTTP or the engine; ``reference.protocol.choice`` feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PARSER_NAMES", "ReasoningMode", "ReasoningParser", "ThinkTags", "parser_tags", "reasoning_mode"]


@dataclass(frozen=True)
class ThinkTags:
    open: str
    close: str

    def opened_by(self, prompt_tail: str) -> bool:
        """Whether a prompt ending in ``prompt_tail`` leaves the model inside the block."""
        return prompt_tail.rstrip().endswith(self.open)


_THINK = ThinkTags("<think>", "</think>")
# vLLM's and llama.cpp's names for the same format work too, so their flags carry over
_PARSERS = {"think": _THINK, "deepseek_r1": _THINK, "qwen3": _THINK, "deepseek": _THINK}
PARSER_NAMES = ("none", *_PARSERS)


def parser_tags(name: str | None) -> ThinkTags | None:
    """The tags of a configured parser name (``None``/``"none"``: no parser)."""
    return None if name in (None, "none") else _PARSERS[str(name)]


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ReasoningParser:
    """One choice's split; ``feed`` text as it comes, then ``finish`` once."""

    def __init__(self, tags: ThinkTags, opened: bool) -> None:
        self.tags = tags
        self._state = "think" if opened else "start"  # start | think | gap | answer
        self._lead = True  # inside the block, nothing but whitespace (or the opening tag) seen yet
        self._buf = ""

    @property
    def thinking(self) -> bool:
        """Whether the output is (still) inside the thoughts, or may yet enter them."""
        return self._state in ("start", "think")

    def feed(self, text: str) -> tuple[str, str]:
        self._buf += text
        reasoning = content = ""
        while True:
            before = (self._state, self._lead, len(self._buf))
            r, c = getattr(self, f"_step_{self._state}")()
            reasoning, content = reasoning + r, content + c
            if (self._state, self._lead, len(self._buf)) == before:
                return reasoning, content

    def finish(self) -> tuple[str, str]:
        """End of generation: held text is released where it stands."""
        buf, self._buf = self._buf, ""
        if self._state == "think":
            return (buf.strip() if self._lead else buf.rstrip()), ""
        if self._state in ("start", "answer"):
            return "", buf
        return "", ""

    def _step_start(self) -> tuple[str, str]:
        head = self._buf.lstrip()
        if head.startswith(self.tags.open):
            self._buf = head[len(self.tags.open) :]
            self._state = "think"
        elif not self.tags.open.startswith(head):  # not a block: the whole output is the answer
            self._state = "answer"
        return "", ""

    def _step_think(self) -> tuple[str, str]:
        if self._lead:
            head = self._buf.lstrip()
            if head.startswith(self.tags.open):  # the model opened the block again itself
                self._buf = head[len(self.tags.open) :]
                return "", ""
            if not head or self.tags.open.startswith(head):
                return "", ""
            self._buf, self._lead = head, False
        at = self._buf.find(self.tags.close)
        if at >= 0:
            thought, self._buf = self._buf[:at].rstrip(), self._buf[at + len(self.tags.close) :]
            self._state = "gap"
            return thought, ""
        rest = self._buf[: len(self._buf) - _partial_suffix(self._buf, self.tags.close)]
        out = rest.rstrip()  # whitespace is held: it may turn out to precede the closing tag
        self._buf = self._buf[len(out) :]
        return out, ""

    def _step_gap(self) -> tuple[str, str]:
        self._buf = self._buf.lstrip()
        if self._buf:
            self._state = "answer"
        return "", ""

    def _step_answer(self) -> tuple[str, str]:
        out, self._buf = self._buf, ""
        return "", out


@dataclass(frozen=True)
class ReasoningMode:
    """How one prompt's outputs are split: the tags, and whether the prompt opened the block."""

    tags: ThinkTags
    opened: bool

    def parser(self) -> ReasoningParser:
        return ReasoningParser(self.tags, self.opened)


def reasoning_mode(name: str | None, tokenizer: Any, prompt_ids: list[int]) -> ReasoningMode | None:
    """The split for a prompt of a model served with parser ``name`` (None: no split)."""
    tags = parser_tags(name)
    if tags is None:
        return None
    tail = str(tokenizer.decode(prompt_ids[-16:], skip_special_tokens=False))
    return ReasoningMode(tags, tags.opened_by(tail))
