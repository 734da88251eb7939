"""The client side of the chat completions wire format: SSE event splitting and chunk folding.

Shared by every client in this project: the conformance suite (re-exported publicly by
:mod:`conformance.client`), the chat CLI (:mod:`reference.cli.chat_stream`), the load and soak
tools and the server tests. Imports nothing of this project, so each of them may use it without
depending on another; knows nothing of HTTP clients, the SDK's classes or what a correct
response looks like.
"""

from wire.fold import REASONING_KEYS, ChunkFolder, fold_chunks, fold_text_chunks
from wire.sse import parse_sse, parse_sse_named

__all__ = ["REASONING_KEYS", "ChunkFolder", "fold_chunks", "fold_text_chunks", "parse_sse", "parse_sse_named"]
