"""Noticing, between checks, a server that stopped answering, and noticing when it answers again.

Before each check the suite probes the server: ``GET /models`` with a short timeout and, after a
check that failed (the usual way a wedge shows first: a request that never came back), also a
one-token chat completion, because a server whose generation is stuck behind a runaway request
often still lists its models. Any HTTP answer, even an error status, counts as answering.

While the server does not answer, each check ends at once as an error "server stopped answering
after <check>" instead of spending a per-request timeout on every request; once a probe is
answered again the checks run as usual. A server that has not answered for ``recovery_wait``
seconds is not probed any more, so the rest of the run finishes in seconds.

Owns the probe and the up/down state. Knows nothing about pytest (the plugin calls ``before`` and
``after``) or about what the checks verify.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import httpx

from conformance.client import Target, make_http

__all__ = ["ServerDown", "Watch"]

GENERATION_FACTOR = 3  # the 1-token generation probe may take this many times the probe timeout


class ServerDown(Exception):
    """The server did not answer the probe before a check; the check is an error, not a failure."""


def _name(nodeid: str) -> str:
    return nodeid.rsplit("/", 1)[-1]


@dataclass
class Watch:
    probe_timeout: float = 5.0
    recovery_wait: float = 120.0
    target: Target | None = None  # unknown until the first check has set up the target
    last: str = ""  # the last check that ran
    suspect: bool = False  # the last check failed: probe generation too
    down_after: str | None = None  # while the server does not answer: the check after which it stopped
    down_since: float = 0.0
    _http: httpx.Client | None = None

    def before(self, nodeid: str) -> None:
        """Raise ``ServerDown`` when the server does not answer the probe."""
        if self.target is None:
            return
        if self.down_after is not None and time.monotonic() - self.down_since > self.recovery_wait:
            raise ServerDown(
                f"server stopped answering after {self.down_after} (no answer for over "
                f"{self.recovery_wait:.0f} s: not probed any more)"
            )
        problem = self.probe(self.target, with_generation=self.suspect)
        if problem is None:
            self.down_after = None
            return
        if self.down_after is None:
            self.down_after, self.down_since = self.last or "the start", time.monotonic()
        raise ServerDown(f"server stopped answering after {self.down_after}: {problem}")

    def after(self, nodeid: str, failed: bool) -> None:
        """Record a check that ran (not one that ended at the probe)."""
        self.last, self.suspect = _name(nodeid), failed

    def probe(self, target: Target, with_generation: bool) -> str | None:
        """None when the server answers; otherwise what went unanswered."""
        if self._http is None:  # one client for the session: a client per probe costs more than the probe
            self._http = make_http(dataclasses.replace(target, timeout=self.probe_timeout))
        body = {
            "model": target.model,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 1,
            "temperature": 0,
        }
        try:
            self._http.get("models")
        except Exception as e:  # whatever kept the answer away (timeouts, refused, reset)
            return f"GET /models: no answer within {self.probe_timeout:g} s ({type(e).__name__})"
        if not with_generation:
            return None
        # a busy CPU server may take seconds to prefill even a short prompt: three times the limit
        limit = GENERATION_FACTOR * self.probe_timeout
        try:
            self._http.post("chat/completions", json=body, timeout=limit)
        except Exception as e:  # whatever kept the answer away (timeouts, refused, reset)
            return f"a 1-token chat completion: no answer within {limit:g} s ({type(e).__name__})"
        return None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
