"""Token-level generation: prefill, decode steps, sampling, stop tokens, cancellation.

The engine knows tensors and token ids. It knows nothing of HTTP, chat messages, text or JSON:
callers hand it prompt ids and :class:`SamplingParams` and read back :class:`TokenEvent`s.
"""

from reference.engine.scheduler import Engine, SequenceHandle
from reference.engine.types import EngineFailure, FinishReason, SamplingParams, TokenConstraint, TokenEvent

__all__ = [
    "Engine",
    "EngineFailure",
    "FinishReason",
    "SamplingParams",
    "SequenceHandle",
    "TokenConstraint",
    "TokenEvent",
]
