"""Self-tests of the conformance suite: a fake server with switchable defects."""

__all__: list[str] = []
