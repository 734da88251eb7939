"""Token-level generation: scheduling, batched forwards over slot KV memory, sampling.

The engine knows tensors and token ids. It knows nothing of HTTP, chat messages, text or JSON:
callers hand it prompt ids and :class:`SamplingParams` and read back :class:`TokenEvent`s.
"""

from reference.engine.engine import Engine, EngineStats, EngineUnavailable
from reference.engine.handle import SequenceHandle
from reference.engine.scheduler import QueueFull, SchedulerConfig
from reference.engine.types import (
    EngineFailure,
    FinishReason,
    PromptLogprobs,
    SamplingParams,
    TokenConstraint,
    TokenEvent,
)

__all__ = [
    "Engine",
    "EngineFailure",
    "EngineStats",
    "EngineUnavailable",
    "FinishReason",
    "PromptLogprobs",
    "QueueFull",
    "SamplingParams",
    "SchedulerConfig",
    "SequenceHandle",
    "TokenConstraint",
    "TokenEvent",
]
