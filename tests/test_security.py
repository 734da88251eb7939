"""API key, CORS, bind defaults and graceful shutdown, each on its own server process."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from reference.cli.serve import settings_from_args
from tests.helpers import TINY, chat_body
from tests.server import serve


def test_defaults_are_safe() -> None:
    s = settings_from_args([])
    assert s.host == "127.0.0.1" and s.api_key is None and s.cors_origins == ()


def test_api_key_required_when_set(tmp_path: Path) -> None:
    with serve(["--model", TINY, "--api-key", "sekret"], tmp_path / "log") as srv:
        assert httpx.get(srv.url + "/health").status_code == 200  # health stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
            r = httpx.post(srv.base_url + "/chat/completions", json=chat_body(), headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["type"] == "authentication_error"
            assert httpx.get(srv.base_url + "/models", headers=headers).status_code == 401
        good = openai.OpenAI(base_url=srv.base_url, api_key="sekret", max_retries=0, timeout=60)
        assert good.chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "x"}], max_tokens=2
        ).choices
        bad = openai.OpenAI(base_url=srv.base_url, api_key="nope", max_retries=0, timeout=60)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()


def test_cors_off_by_default_and_on_when_asked(tmp_path: Path, base_url: str) -> None:
    pre = {"Origin": "http://example.test", "Access-Control-Request-Method": "POST"}
    r = httpx.options(base_url + "/v1/chat/completions", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    with serve(["--model", TINY, "--cors-origins", "http://example.test"], tmp_path / "log") as srv:
        r = httpx.options(srv.base_url + "/chat/completions", headers=pre)
        assert r.headers.get("access-control-allow-origin") == "http://example.test"


def test_sigterm_during_a_stream_exits_promptly(tmp_path: Path) -> None:
    with serve(["--model", TINY], tmp_path / "log") as srv:
        body = chat_body(max_tokens=450, stream=True, logit_bias={"2": -100})
        with httpx.stream("POST", srv.base_url + "/chat/completions", json=body, timeout=30) as r:
            next(r.iter_lines())
            t0 = time.monotonic()
            proc = srv.process
            assert proc is not None
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        assert time.monotonic() - t0 < 8.0
        # uvicorn re-raises the signal after a clean shutdown, so -SIGTERM is a normal exit here
        assert proc.returncode in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in srv.log()
