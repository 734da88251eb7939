"""Stop strings across token boundaries: hold back text that could still become a stop.

The stop text itself is never released, and nothing after it.
"""

from __future__ import annotations

__all__ = ["StopMatcher"]


class StopMatcher:
    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.matched: str | None = None

    def push(self, text: str) -> str:
        """Add generated text; return what is safe to release now."""
        if not self._stops:
            return text
        buf = self._held + text
        hits = [(buf.find(s), s) for s in self._stops if s in buf]
        if hits:
            cut, self.matched = min(hits)
            self._held = ""
            return buf[:cut]
        keep = self._longest_stop_prefix_suffix(buf)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        out, self._held = self._held, ""
        return out

    def _longest_stop_prefix_suffix(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of some stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best
