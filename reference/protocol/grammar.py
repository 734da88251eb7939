"""Grammar-constrained decoding with llguidance: JSON output and enforced tool calls.

Builds one Lark grammar per request (JSON schema, a forced call, or text-or-call) and hands
the engine a :class:`GrammarConstraint` per sequence, which turns llguidance's token bitmask
into a bool mask. Compiled matchers are cached per grammar and copied per sequence.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from reference.protocol.tools.formats import ToolFormat

__all__ = ["GrammarConstraint", "GrammarError", "Grammars", "json_grammar", "tool_grammar", "with_reasoning"]

log = logging.getLogger("chatref.grammar")

# Compact, deterministic JSON: llguidance's default allows any whitespace, which lets a small
# model ramble in spaces and newlines until max_tokens.
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(ValueError):
    pass


def _styled(schema: dict[str, Any]) -> str:
    return json.dumps({**schema, "x-guidance": _JSON_STYLE})


def json_grammar(schema: dict[str, Any] | None) -> str:
    """Any JSON object (``json_object``) or one that validates against ``schema``."""
    body = schema if schema is not None else {"type": "object"}
    return f"start: %json {_styled(body)}\n"


def _call_schema(tool: dict[str, Any], args_key: str) -> dict[str, Any]:
    params = tool.get("parameters") or {"type": "object", "properties": {}}
    return {
        "type": "object",
        "properties": {"name": {"const": tool["name"]}, args_key: params},
        "required": ["name", args_key],
        "additionalProperties": False,
    }


def tool_grammar(fmt: ToolFormat, tools: list[dict[str, Any]], *, mode: str, parallel: bool) -> str:
    """``mode``: ``required`` (one or more calls, nothing else) or ``auto`` (text, or calls).

    ``tools`` are OpenAI function objects (name, description, parameters).
    """
    schemas = [_call_schema(t, fmt.args_key) for t in tools]
    body = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    call = " ".join(part for part in (_lit(fmt.open), "body", _lit(fmt.close)) if part)
    calls = "call+" if parallel else "call"
    lines = [f"call: {call}", f"body: %json {_styled(body)}"]
    if mode == "required":
        return "\n".join([f"start: {calls}", *lines]) + "\n"
    if not fmt.open:  # bare JSON calls: text just may not start with "{"
        return "\n".join([f"start: TEXT | {calls}", "TEXT: /[^{](.|\\n)*/", *lines]) + "\n"
    # Text that never contains the call marker; or text up to the first marker (a lazy lexeme,
    # so it ends there) and then calls. A marker in the output therefore always starts a call.
    more = "call*" if parallel else ""
    close = _lit(fmt.close)
    return (
        "\n".join(
            [
                f"start: TEXT | lead body {close} {more}".rstrip(),
                f"TEXT: /(.|\\n)+/ & ~/(.|\\n)*{_re(fmt.open)}(.|\\n)*/",
                f"lead[lazy]: /(.|\\n)*{_re(fmt.open)}/",
                *lines,
            ]
        )
        + "\n"
    )


def with_reasoning(lark: str, open_tag: str, close_tag: str, *, opened: bool) -> str:
    """``lark`` for the answer after a free thinking block: text up to the first closing tag (a
    lazy lexeme, so it ends there), a little whitespace (bounded: a small model would rather
    pad with newlines than start a JSON object), then the answer. ``opened``: the prompt already
    opened the block, so the output starts inside it; otherwise the block is optional."""
    assert lark.startswith("start:"), "every grammar built here starts with its start rule"
    answer = "answer:" + lark.removeprefix("start:")
    if opened:
        head = ["start: think GAP? answer", f"think[lazy]: /(.|\\n)*{_re(close_tag)}/"]
    else:
        head = [
            "start: (think GAP?)? answer",
            f"think[lazy]: /[ \\n]*{_re(open_tag)}(.|\\n)*{_re(close_tag)}/",
        ]
    return "\n".join([*head, "GAP: /[ \\n]{1,4}/", answer])


def _lit(text: str) -> str:
    return json.dumps(text) if text else ""


def _re(text: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\/" else c for c in text)


class GrammarConstraint:
    """One sequence's matcher, speaking the engine's ``TokenConstraint`` protocol."""

    def __init__(self, matcher: Any) -> None:
        self._matcher = matcher
        self.failed = False

    def allowed_mask(self, vocab_size: int) -> torch.Tensor | None:
        if self.failed:
            return None
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little")[:vocab_size].astype(bool)  # [vocab]
        if not mask.any():
            return None
        return torch.from_numpy(mask)

    def accept(self, token_id: int) -> None:
        if not self.failed and not self._matcher.consume_token(token_id):
            self.failed = True
            log.warning("grammar rejected token %d: %s", token_id, self._matcher.get_error())


class Grammars:
    """Per-model llguidance tokenizer and a small cache of compiled grammars."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token_ids: frozenset[int]) -> None:
        self._hf = tokenizer
        self._vocab = vocab_size
        self._eos = sorted(eos_token_ids)
        self._ll: Any = None
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _tokenizer(self) -> Any:
        if self._ll is None:
            import llguidance.hf

            self._ll = llguidance.hf.from_tokenizer(self._hf, n_vocab=self._vocab, eos_token=self._eos)
        return self._ll

    def constraint(self, lark: str) -> GrammarConstraint:
        """Compile (or reuse) ``lark``; raises :class:`GrammarError` for a bad grammar/schema."""
        from llguidance import LLMatcher

        with self._lock:
            template = self._cache.get(lark)
            if template is None:
                grammar = LLMatcher.grammar_from_lark(lark)
                error = LLMatcher.validate_grammar(grammar, self._tokenizer())
                if error:
                    raise GrammarError(error)
                template = LLMatcher(self._tokenizer(), grammar)
                if template.is_error():
                    raise GrammarError(template.get_error())
                self._cache[lark] = template
                while len(self._cache) > 64:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(lark)
            return GrammarConstraint(template.deep_copy())
