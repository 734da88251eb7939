"""Choosing the model per request: switching, ids that look like paths, hub ids, failing loads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from reference.presets import DEFAULT_MODEL, PRESETS, TINY_MODEL
from tests.model_table import HUB_ID, TableServer, ask, model_info, table_server

__all__ = ["table_server"]  # the fixture, imported so pytest finds it here

SAMPLED: dict[str, Any] = {"temperature": 1.0, "seed": 11, "max_tokens": 12, "logit_bias": {"2": -100}}


def _text(out: dict[str, object]) -> str:
    assert out["status"] == 200, out
    choices = out["choices"]
    assert isinstance(choices, list)
    return str(choices[0]["message"]["content"])


def test_switching_back_and_forth_gives_each_model_its_own_answers(table_server: TableServer) -> None:
    http = table_server.http
    answers = [(m, _text(ask(http, m, **SAMPLED))) for m in (TINY_MODEL, "tiny-b", TINY_MODEL, "tiny-b")]
    assert answers[0] == answers[2] and answers[1] == answers[3]
    assert answers[0][1] != answers[1][1]
    assert model_info(http, "tiny-b")["loads"] == 1  # both stayed resident: no reload per switch


@pytest.mark.slow
def test_switching_between_the_default_model_and_tiny(table_server: TableServer) -> None:
    http = table_server.http
    q = "What is the capital of France?"
    seq = [DEFAULT_MODEL, TINY_MODEL, DEFAULT_MODEL, TINY_MODEL]
    answers = [_text(ask(http, m, q, temperature=0, max_tokens=10)) for m in seq]
    assert "Paris" in answers[0] and answers[0] == answers[2]
    assert answers[1] == answers[3] and "Paris" not in answers[1]


@pytest.mark.parametrize(
    "name",
    [
        "../" + TINY_MODEL,
        TINY_MODEL + "/../" + TINY_MODEL,
        "./" + TINY_MODEL,
        "/etc/passwd",
        "..",
        "~/.cache",
        "file:///etc/passwd",
        "%2e%2e%2f" + TINY_MODEL,
        "linked/config.json",  # a configured dir's own file, relative to the config file
        str(PRESETS[TINY_MODEL].directory()),  # the absolute path of a servable model's files
    ],
)
def test_path_like_ids_are_unknown_models(table_server: TableServer, name: str) -> None:
    out = ask(table_server.http, name)
    assert out["status"] == 404 and out["error"]["code"] == "model_not_found", out
    # percent-encoded: a client would otherwise resolve the dot segments before sending
    assert table_server.http.get("/v1/models/" + quote(name, safe="")).status_code == 404


def test_unknown_id_is_404_envelope(table_server: TableServer) -> None:
    out = ask(table_server.http, "gpt-4o")
    assert out["status"] == 404
    assert out["error"] == {
        "message": "The model `gpt-4o` does not exist or is not served here.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_hub_id_served_from_local_cache_only(table_server: TableServer) -> None:
    http = table_server.http
    assert http.get(f"/v1/models/{HUB_ID}").status_code == 404  # not listed before its first use
    assert _text(ask(http, HUB_ID, **SAMPLED)) == _text(ask(http, TINY_MODEL, **SAMPLED))  # same weights
    assert model_info(http, HUB_ID)["mode"]["source"] == "hub"
    missing = ask(http, "chatref-test/not-downloaded")  # would need a download: refused fast
    assert missing["status"] == 404 and missing["error"]["code"] == "model_not_found"
    assert "does not download" in missing["error"]["message"]


def test_failing_load_is_an_envelope_and_the_server_stays_healthy(table_server: TableServer) -> None:
    http = table_server.http
    for _ in range(2):  # a later request tries again (the operator may have fixed the files)
        out = ask(http, "broken")
        assert out["status"] == 503, out
        assert out["error"]["code"] == "model_load_failed" and out["error"]["type"] == "server_error"
    assert http.get("/health").json()["status"] == "ok"
    assert not model_info(http, "broken")["loaded"]
    assert _text(ask(http, TINY_MODEL))
    assert "loading broken failed" in table_server.server.log()


def test_symlink_out_of_a_model_dir_is_refused_at_load(table_server: TableServer, tmp_path: Path) -> None:
    """Checked at start (see test_registry) and again before each load: files may change later."""
    weights = table_server.root / "linked" / "model.safetensors"
    outside = tmp_path / "elsewhere.safetensors"
    weights.rename(outside)
    os.symlink(outside, weights)
    out = ask(table_server.http, "linked")
    assert out["status"] == 503 and "points outside the model directory" in out["error"]["message"]
    assert table_server.http.get("/health").status_code == 200


def test_models_list_every_servable_model_with_mode(table_server: TableServer) -> None:
    body = table_server.http.get("/v1/models").json()
    by_id = {m["id"]: m for m in body["data"]}
    assert {TINY_MODEL, "tiny-b", "tiny-pl", "tiny-draft", f"{TINY_MODEL}-int8", DEFAULT_MODEL} <= set(by_id)
    assert by_id[TINY_MODEL]["loaded"] is True  # the default: first in the config, loaded at start
    assert by_id[f"{TINY_MODEL}-int8"]["aliases"] == ["tiny-int8"]
    assert by_id[f"{TINY_MODEL}-int8"]["mode"]["quantization"] == "int8"
    assert by_id["tiny-draft"]["mode"]["speculative"] == "draft:tiny-int8"
    assert by_id["broken"]["mode"]["source"] == "dir" and by_id[TINY_MODEL]["mode"]["source"] == "preset"
