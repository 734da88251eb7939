"""The Responses API (``/v1/responses``) over the chat pipeline.

A Responses request is translated into the internal chat request (:mod:`.translate`), runs
through the same generation as chat completions, and its choice deltas are folded into output
items and stream events (:mod:`.render`); finished responses are kept in a bounded store
(:mod:`.store`) for ``previous_response_id`` and ``GET /v1/responses/{id}``.
"""
