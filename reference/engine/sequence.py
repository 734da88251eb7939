"""One sequence's state inside the engine: its prompt, what is computed, its tokens, its end.

A sequence is WAITING until the scheduler gives it a KV slot, PREFILL while its prompt is
computed chunk by chunk, DECODE once it has a token to feed back, and FINISHED after its last
token, a cancellation or a failure. ``computed`` counts the positions whose keys/values are in
its slot; the last committed token is never among them until the next forward feeds it.
Knows nothing of tensors or of how the forwards are batched.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reference.engine.types import FinishReason, SamplingParams, TokenConstraint

if TYPE_CHECKING:
    from reference.engine.handle import SequenceHandle
    from reference.engine.sampling import SamplerState
    from reference.engine.speculative import Proposer

__all__ = ["Sequence", "State"]


class State(enum.Enum):
    WAITING = "waiting"
    PREFILL = "prefill"
    DECODE = "decode"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    id: int
    prompt_ids: list[int]
    params: SamplingParams
    handle: SequenceHandle
    sampler: SamplerState
    constraint: TokenConstraint | None
    max_length: int  # prompt + output may not exceed this (the slot's capacity)
    proposer: Proposer | None = None  # set when this sequence decodes speculatively
    state: State = State.WAITING
    slot: int = -1
    computed: int = 0  # positions with keys/values in the slot
    cached: int = 0  # of the prompt, positions reused from the prefix cache
    output: list[int] = field(default_factory=list)
    arrived: float = field(default_factory=time.monotonic)

    @property
    def prompt_left(self) -> int:
        return len(self.prompt_ids) - self.computed

    @property
    def last_token(self) -> int:
        return self.output[-1]

    @property
    def history(self) -> list[int]:
        """Prompt and output so far, what a speculative proposer reads."""
        return self.prompt_ids + self.output

    def commit(self, token: int) -> FinishReason | None:
        """Append a generated token; returns why the sequence ends here, if it does."""
        self.output.append(token)
        self.state = State.DECODE
        if self.constraint is not None:
            self.constraint.accept(token)
        if token in self.params.stop_token_ids:
            return "stop"
        if len(self.output) >= self.params.max_new_tokens:
            return "length"
        if len(self.prompt_ids) + len(self.output) >= self.max_length:
            return "length"
        return None

    def tokens_left(self) -> int:
        """How many more tokens this sequence may still produce."""
        room = self.max_length - len(self.prompt_ids) - len(self.output)
        return max(0, min(self.params.max_new_tokens - len(self.output), room))
