"""The bounded in-memory store of finished responses (least recently used goes first).

Keeps, per response id, the response object (for ``GET /v1/responses/{id}``) and the chat
conversation it ends (for ``previous_response_id``). Lives on the event loop only, so it needs
no lock. Knows nothing of HTTP or of generation; nothing survives a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from reference.responses.schemas import ResponseObject
from reference.schemas import Message

__all__ = ["ResponseStore", "Stored"]


@dataclass(frozen=True)
class Stored:
    response: ResponseObject
    conversation: list[Message]  # every turn up to and including this response's output


class ResponseStore:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity  # 0 keeps nothing: every `store` is then a no-op
        self._items: OrderedDict[str, Stored] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, stored: Stored) -> None:
        if self.capacity <= 0:
            return
        self._items[stored.response.id] = stored
        self._items.move_to_end(stored.response.id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> Stored | None:
        stored = self._items.get(response_id)
        if stored is not None:
            self._items.move_to_end(response_id)
        return stored

    def delete(self, response_id: str) -> bool:
        return self._items.pop(response_id, None) is not None
