"""The schemathesis figures: sorting failures into buckets, 4xx reasons, totals and rendering."""

from __future__ import annotations

import requests
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup, MalformedJson, ServerError

from conformance.fuzz import Figures, rejected_param, sort_failure

__all__: list[str] = []


def _server_error() -> ServerError:
    return ServerError(operation="POST /chat/completions", status_code=500)


def test_failures_are_sorted_into_buckets() -> None:
    schema = MalformedJson(operation="op", validation_message="x", document="{", position=1, lineno=1,
                           colno=2, message="not JSON")  # fmt: skip
    accepted = AcceptedNegativeData(operation="op", message="ok", status_code=200, expected_statuses=["4XX"])
    group = FailureGroup([_server_error(), schema])
    assert [b for b, _ in sort_failure(group)] == ["server_errors", "schema_violations"]
    assert sort_failure(accepted)[0][0] == "accepted_invalid"
    assert sort_failure(requests.ConnectionError("refused"))[0][0] == "no_response"
    assert sort_failure(KeyError("x"))[0][0] == "other"


def test_figures_count_cases_once_per_bucket_and_reasons_of_4xx() -> None:
    figures = Figures()
    run = figures.start("sdk", "createChatCompletion", "negative")
    run.record(500, FailureGroup([_server_error(), _server_error()]), "POST /chat/completions")
    run.record(400, None, body=b'{"error": {"param": "messages[0].role", "message": "m"}}')
    run.record(400, None, body=b'{"error": {"param": "messages[3].role", "message": "m"}}')
    run.record(None, requests.ReadTimeout("slow"))
    assert (run.cases, run.failed_cases) == (4, 2)
    assert figures.totals() == {"cases": 4, "failed_cases": 2, "server_errors": 1, "schema_violations": 0,
                                "accepted_invalid": 0, "no_response": 1, "other": 0}  # fmt: skip
    doc = figures.to_json()["runs"][0]
    assert doc["statuses"] == {"400": 2, "500": 1, "none": 1}
    assert doc["rejected_by_param"] == {"messages[].role": 2}
    assert doc["examples"]["server_errors"][0].startswith("POST /chat/completions: ")
    assert any(line.startswith("sdk createChatCompletion negative") for line in figures.table_lines())
    assert "| TOTAL | 4 | 1 | 0 | 0 | 1 | 0 |  |" in figures.markdown()
    assert rejected_param(b"<html>") == "(not an envelope)"
    assert rejected_param(b'{"error": {}}') == "(no param)"
