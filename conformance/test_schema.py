"""schemathesis runs: positive and negative generation against SDK-derived and official schemas.

Owns the bounded property-based runs (examples per operation, no deadline, derandomized),
the hook pinning ``model`` and a small ``max_tokens``, and the SSE deserializer so streamed
bodies are validated as ``[DONE]`` or chunks. Every case sent is tallied in the session's
figures; with ``--conformance-fuzz-examples N`` the chat runs take N examples and keep sending
after failures, so the figures count them all. Knows nothing about hand-written checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from conformance.api import Api
from conformance.checks import ConformanceError
from conformance.client import parse_sse
from conformance.fuzz import Figures, RunFigures
from conformance.openapi import official_document, sdk_document

pytestmark = pytest.mark.conformance("schemathesis")
__all__: list[str] = []


@schemathesis.deserializer("text/event-stream")
def _sse_events(ctx: Any, response: Any) -> list[Any]:
    events, _ = parse_sse(response.content.decode("utf-8", "replace"))
    return [e if e == "[DONE]" else json.loads(e) for e in events]


@schemathesis.check
def stream_ends_with_done(ctx: Any, response: Any, case: Any) -> bool | None:
    if (
        response.headers.get("content-type", [""])[0].startswith("text/event-stream")
        if isinstance(response.headers.get("content-type"), list)
        else str(response.headers.get("content-type", "")).startswith("text/event-stream")
    ):
        events, _ = parse_sse(response.content.decode("utf-8", "replace"))
        if not events or events[-1] != "[DONE]":
            raise AssertionError("the stream does not end with data: [DONE]")
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    stream_ends_with_done,
]


def pin(body: Any, model: str) -> None:
    """The hook: a known model, a small max_tokens and n, unless that field carries the negative mutation."""
    if not isinstance(body, dict):
        return
    if isinstance(body.get("model"), str):
        body["model"] = model
    for key in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(key), int) and not isinstance(body.get(key), bool):
            body[key] = min(max(body[key], 1), 4) if body[key] >= 1 else body[key]
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = 4
    if isinstance(body.get("n"), int) and not isinstance(body.get("n"), bool) and body["n"] > 2:
        body["n"] = 2


STOP_AFTER = 3  # failures that end a bounded run (enough evidence)
FUZZ_STOP_AFTER = 25  # cases without any response that end a fuzzing run (the server is gone)


def _run(
    api: Api,
    doc: dict[str, Any],
    operation_id: str,
    mode: GenerationMode,
    examples: int,
    figures: RunFigures,
    fuzz: bool = False,
) -> None:
    schema = schemathesis.openapi.from_dict(doc)
    ops = [r.ok() for r in schema.get_all_operations() if not isinstance(r, Err)]
    op = next(o for o in ops if o.definition.raw.get("operationId") == operation_id)
    headers = {"Authorization": f"Bearer {api.target.api_key}"} if api.target.api_key else {}
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    failures: list[str] = []

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if operation_id == "createChatCompletion":
            pin(case.body, api.target.model)
        elif operation_id == "retrieveModel" and mode == GenerationMode.POSITIVE:
            case.path_parameters = {"model": api.target.model}
        if (not fuzz and len(failures) >= STOP_AFTER) or figures.counts["no_response"] >= FUZZ_STOP_AFTER:
            return  # keep the run bounded
        status, body = None, b""
        where = f"{case.method} {case.path} body={json.dumps(case.body, default=str)[:120]}"
        try:
            response = case.call(
                base_url=api.target.base_url, headers=headers, timeout=min(api.target.timeout, 30)
            )
            status, body = response.status_code, response.content
            case.validate_response(response, checks=checks)
        except (Exception, BaseExceptionGroup) as e:  # collect, keep generating: the report shows the first
            figures.record(status, e, where, body)
            failures.append(f"{where}: {' '.join(str(e).split())[:220]}")
        else:
            figures.record(status, None, body=body)

    run()
    if failures:
        raise ConformanceError(
            f"{len(failures)} schemathesis failure(s) ({mode.value}); first: {failures[0]}"
        )


SDK_RUNS = [
    ("createChatCompletion", GenerationMode.POSITIVE),
    ("createChatCompletion", GenerationMode.NEGATIVE),
    ("listModels", GenerationMode.POSITIVE),
    ("retrieveModel", GenerationMode.POSITIVE),
]


def _examples(request: pytest.FixtureRequest) -> tuple[int, bool]:
    """Examples per chat run, and whether this is a fuzzing run (every case sent and counted)."""
    fuzz = int(request.config.getoption("conformance_fuzz_examples"))
    return (fuzz, True) if fuzz > 0 else (int(request.config.getoption("conformance_max_examples")), False)


@pytest.mark.parametrize(
    ("operation", "mode"), [pytest.param(o, m, id=f"{o}-{m.value}") for o, m in SDK_RUNS]
)
def test_sdk_schema(
    api: Api,
    request: pytest.FixtureRequest,
    conformance_figures: Figures,
    operation: str,
    mode: GenerationMode,
) -> None:
    examples, fuzz = _examples(request)
    chat = operation == "createChatCompletion"
    figures = conformance_figures.start("sdk", operation, mode.value)
    _run(api, sdk_document(), operation, mode, examples if chat else 5, figures, fuzz and chat)


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
def test_official_schema(
    api: Api, request: pytest.FixtureRequest, conformance_figures: Figures, mode: GenerationMode
) -> None:
    spec = request.config.getoption("conformance_openapi_spec")
    if not spec:
        pytest.skip("no --openapi-spec given")
    examples, fuzz = _examples(request)
    figures = conformance_figures.start("official", "createChatCompletion", mode.value)
    _run(api, official_document(Path(spec)), "createChatCompletion", mode, examples, figures, fuzz)
