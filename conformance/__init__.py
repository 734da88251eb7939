"""chatref conformance suite: judges any OpenAI-compatible chat server, feature by feature.

Run it with ``pytest conformance --base-url http://host:port/v1 --model NAME`` (or
``pytest --pyargs conformance ...`` where it is installed); see ``docs/conformance.md``.
"""

__all__: list[str] = []
