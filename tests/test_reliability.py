"""Model leases, request timeouts and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from reference.app import create_app
from reference.engine import SamplingParams
from reference.engine.engine import MAX_WORKER_RESTARTS
from reference.launch import free_port
from reference.presets import TINY_MODEL, get_preset, materialize
from reference.registry import ModelSource, Registry
from reference.settings import Settings
from tests.helpers import TIMEOUT, TINY, chat_body, sse_events
from tests.server import serve


def _tiny_sources() -> list[ModelSource]:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    path = materialize(preset)
    return [ModelSource("a", lambda: path), ModelSource("b", lambda: path)]


def test_a_leased_model_is_never_evicted() -> None:
    async def main() -> None:
        registry = Registry(_tiny_sources(), max_loaded=1)
        try:
            lease = await registry.lease("a")  # chosen, not yet submitted: the old race window
            await registry.acquire("b")  # loading b wants a's room
            assert registry.is_loaded("a"), "a leased model was evicted"
            handle = lease.served.engine.submit([1, 2, 3], SamplingParams(max_new_tokens=3))
            assert len([ev async for ev in handle]) == 3
            lease.release()
            lease.release()  # idempotent
            assert lease.served.leases == 0
            registry.unload("a")  # unleased: it goes, and its engine closes at once
            assert not registry.is_loaded("a")
            assert not lease.served.engine._thread.is_alive()
        finally:
            registry.close()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_an_evicted_model_in_use_closes_only_after_its_lease(tmp_path: Path) -> None:
    async def main() -> None:
        registry = Registry(_tiny_sources(), max_loaded=2)
        try:
            async with registry.use("a") as served:
                registry.unload("a")  # an operator action or eviction while a request holds it
                assert served.engine._thread.is_alive()
                handle = served.engine.submit([4, 5, 6], SamplingParams(max_new_tokens=2))
                assert len([ev async for ev in handle]) == 2
            assert not served.engine._thread.is_alive()
        finally:
            registry.close()

    asyncio.run(asyncio.wait_for(main(), 120))


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("timed") / "server.log"
    with serve(["--model", TINY, "--request-timeout", "0.05"], log) as running:
        yield running.url


def test_request_timeout_is_504_in_json(timed: str) -> None:
    r = httpx.post(timed + "/v1/chat/completions", json=chat_body(max_tokens=450), timeout=TIMEOUT)
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "request_timeout"


def test_request_timeout_is_an_error_event_in_a_stream(timed: str) -> None:
    body = chat_body(max_tokens=450, stream=True)
    r = httpx.post(timed + "/v1/chat/completions", json=body, timeout=TIMEOUT)
    assert r.status_code == 200
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "request_timeout"


def test_sigterm_drains_eight_streams_within_the_shutdown_timeout(tmp_path: Path) -> None:
    with serve(["--model", TINY, "--shutdown-timeout", "2"], tmp_path / "log") as srv:
        body = chat_body(max_tokens=450, stream=True, logit_bias={"2": -100})
        with contextlib.ExitStack() as stack:
            url = srv.base_url + "/chat/completions"
            opened = (httpx.stream("POST", url, json=body, timeout=30) for _ in range(8))
            streams = [stack.enter_context(s) for s in opened]
            for s in streams:
                next(s.iter_lines())  # all eight are live
            proc = srv.process
            assert proc is not None
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(2 + 5)
        assert time.monotonic() - t0 < 2 + 5
        # uvicorn re-raises the signal after a clean shutdown, so -SIGTERM is a normal exit here
        assert proc.returncode in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in srv.log()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the deaths
def test_an_engine_whose_worker_keeps_dying_answers_503_and_health_says_so() -> None:
    """Real uvicorn on loopback in this process, so the fault can be put into the real engine."""

    async def main() -> None:
        registry = Registry(_tiny_sources()[:1], max_loaded=1)
        app = create_app(Settings(metrics=False), registry)
        config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="error")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            served = registry.served("a")
            assert served is not None

            def die(_: object) -> None:
                raise SystemExit("injected worker death")

            served.engine.forward_hook = die
            url = f"http://127.0.0.1:{config.port}"
            async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
                for i in range(MAX_WORKER_RESTARTS + 1):  # each request kills the worker once
                    r = await http.post("/v1/chat/completions", json=chat_body(model="a", stream=i % 2 == 1))
                    assert r.status_code in (200, 500), r.text  # an error event in a stream, else a 500
                    assert "worker thread stopped" in r.text
                r = await http.post("/v1/chat/completions", json=chat_body(model="a"))
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "engine_unavailable"
                health = (await http.get("/health")).json()
                assert health["status"] == "degraded"
                assert health["engines"]["a"]["worker_alive"] is False
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)

    asyncio.run(asyncio.wait_for(main(), 180))
