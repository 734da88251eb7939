"""``usage``: token counts that agree with the request and with what was streamed.

Owns ``prompt_tokens`` (the same for identical requests, more for a longer prompt) and
``completion_tokens`` against the tokens a stream carried, counted by their logprobs entries
(one per token). The usage sums and the final usage chunk are ``test_chat``'s and
``test_params``'. Knows nothing about SSE framing.
"""

from __future__ import annotations

import pytest

from conformance.api import Api
from conformance.checks import ConformanceError, check_usage, describe

pytestmark = pytest.mark.conformance("usage")
__all__: list[str] = []

SHORT = [{"role": "user", "content": "Name a colour."}]
LONGER = [{"role": "user", "content": "Name a colour. " + "Then name another one, and another. " * 8}]


def test_prompt_tokens_stable(api: Api) -> None:
    counts = [api.chat(max_tokens=1, messages=SHORT).body["usage"]["prompt_tokens"] for _ in range(3)]
    if len(set(counts)) != 1:
        raise ConformanceError(f"three identical requests reported prompt_tokens {counts}")
    longer = api.chat(max_tokens=1, messages=LONGER).body["usage"]["prompt_tokens"]
    if longer <= counts[0]:
        raise ConformanceError(
            f"a prompt 8 sentences longer reported prompt_tokens {longer}, not more than {counts[0]}"
        )


def test_completion_tokens_match_stream(api: Api) -> None:
    """With logprobs on, a stream carries one logprobs entry per token: as many as completion_tokens."""
    r = api.chat(
        stream=True,
        feature="logprobs in streams",
        logprobs=True,
        top_logprobs=2,
        max_tokens=12,
        stream_options={"include_usage": True},
    )
    lp = r.body["choices"][0].get("logprobs")
    if not lp or not lp.get("content"):
        pytest.skip("the stream carried no logprobs to count tokens by (see test_logprobs_shape)")
    usage = r.body.get("usage")
    if usage is None:
        raise ConformanceError("a stream with stream_options.include_usage carried no usage")
    check_usage(usage, "streamed usage")
    if usage["completion_tokens"] != len(lp["content"]):
        raise ConformanceError(
            f"the stream carried {len(lp['content'])} tokens (logprobs entries) but usage says "
            f"completion_tokens {usage['completion_tokens']}: {describe(usage)}"
        )
