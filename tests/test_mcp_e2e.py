"""MCP end to end: tiny-agents + a real stdio MCP server + the reference server + the tool-trained model.

The agent (huggingface_hub's ``Agent``, and the ``tiny-agents`` CLI a user would run) lists
the MCP server's tools, sends them with ``tool_choice: "auto"`` to a real ``chatref serve``
process over HTTP, the model's streamed call reaches the MCP server (which logs it), the
result comes back as a ``tool`` message and the model answers with it.  Every wait is
bounded.  Slow: builds the tool-trained model on first use (minutes, then cached).

tiny-agents sends no ``temperature``, so a request takes the model's own sampling defaults
(``generation_config.json``, as with vLLM) and, without any, OpenAI's 1.0. At 1.0 the 135M
model now and then misspells a rare city name it copies into the arguments ("Accras") or
leaves the temperature out of its answer, so the served copy carries SmolLM2-Instruct's
published defaults (temperature 0.2, top_p 0.9), as a deployment of it would. These tests
check the round trip (the right tool, a city argument, the answer carrying whatever the MCP
server returned); ``tests/test_tool_model.py`` checks exact arguments greedily.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.mcp_weather import forecast
from reference.presets import TOOLS_MODEL, get_preset, materialize
from tests.server import RunningServer, serve

pytest.importorskip("mcp")
pytest.importorskip("huggingface_hub.inference._mcp.agent")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

MODEL = TOOLS_MODEL
REPO = Path(__file__).resolve().parents[1]
CITY = "Hanoi"  # not among the training cities
TURN_TIMEOUT = 300.0


def _temperature(result: str) -> str:
    match = re.search(r"(-?\d+)°C", result)
    assert match, result
    return match.group(1)


SAMPLING = {"temperature": 0.2, "top_p": 0.9}  # HuggingFaceTB/SmolLM2-135M-Instruct's model card


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    preset = get_preset(MODEL)
    assert preset is not None
    # the build can take minutes on a busy CPU; the copy then carries the sampling defaults
    model_dir = Path(shutil.copytree(materialize(preset), tmp_path_factory.mktemp("model") / MODEL))
    config = json.loads((model_dir / "generation_config.json").read_text())
    (model_dir / "generation_config.json").write_text(json.dumps({**config, **SAMPLING}))
    log = tmp_path_factory.mktemp("mcp-server") / "server.log"
    with serve(["--model", f"{MODEL}={model_dir}"], log, startup_timeout=300) as running:
        yield running


@pytest.fixture(autouse=True)
def _online_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # With HF_HUB_OFFLINE=1 huggingface_hub refuses even requests to 127.0.0.1.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _mcp_server(log: Path) -> dict[str, Any]:
    return {
        "type": "stdio",
        "command": sys.executable,
        "args": ["-m", "fixtures.mcp_weather", "--log", str(log)],
        "cwd": str(REPO),
    }


def _calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


async def _run_agent(base_url: str, mcp_log: Path, question: str) -> tuple[list[str], list[Any]]:
    from huggingface_hub import Agent

    servers: list[Any] = [_mcp_server(mcp_log)]  # a StdioServerConfig TypedDict
    # asyncio.timeout, not wait_for: the MCP stdio client's anyio cancel scopes must be entered
    # and left in the same task, and wait_for runs its awaitable in a new one.
    async with asyncio.timeout(TURN_TIMEOUT + 60):
        async with Agent(model=MODEL, base_url=base_url, api_key="unused", servers=servers) as agent:
            await agent.load_tools()
            names = [t.function.name for t in agent.available_tools]
            async for _ in agent.run(question):
                pass
            return names, list(agent.messages)


def _get(message: Any, key: str) -> Any:
    return message.get(key) if isinstance(message, dict) else getattr(message, key, None)


def test_agent_round_trip(tools_server: RunningServer, tmp_path: Path) -> None:
    mcp_log = tmp_path / "mcp-calls.jsonl"
    names, messages = asyncio.run(
        _run_agent(tools_server.base_url, mcp_log, f"What's the weather in {CITY}?")
    )
    assert {"get_weather", "calculate"} <= set(names), names

    # the model's call reached the MCP server
    result = _one_weather_call(mcp_log)

    # the conversation: user, assistant call (with an id), tool result, assistant answer
    roles = [_get(m, "role") for m in messages]
    assert roles[:5] == ["system", "user", "assistant", "tool", "assistant"], roles
    call = _get(messages[2], "tool_calls")[0]
    assert call["id"] and call["function"]["name"] == "get_weather", call
    assert set(json.loads(call["function"]["arguments"])) == {"city"}, call
    assert _get(messages[3], "content") == result
    answer = _get(messages[4], "content")
    assert _temperature(result) in answer, (answer, tools_server.log()[-2000:])


def _one_weather_call(mcp_log: Path, *, repeats: bool = False) -> str:
    """The result of the one get_weather call the MCP server logged. With ``repeats``, the same
    call made again is allowed: tiny-agents sends no temperature, so the model samples at 1.0
    and may check the weather twice before answering."""
    calls = _calls(mcp_log)
    assert calls and all(c == calls[0] for c in calls) if repeats else len(calls) == 1, calls
    assert calls[0]["tool"] == "get_weather", calls
    city = calls[0]["arguments"].get("city")
    assert isinstance(city, str) and city.strip(), calls
    assert calls[0]["result"] == forecast(city)
    return str(calls[0]["result"])


def _read_until(proc: subprocess.Popen[bytes], done: Callable[[str], bool], timeout: float) -> str:
    """The process's stdout (ANSI colours removed) once ``done`` holds for it, or at the timeout."""
    assert proc.stdout is not None
    chunks: list[bytes] = []
    fd = proc.stdout.fileno()
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(fd, 4096), b"")), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while True:
        text = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode(errors="replace"))
        if done(text) or time.monotonic() > deadline or not reader.is_alive():
            return text
        time.sleep(0.5)


def test_tiny_agents_cli(tools_server: RunningServer, tmp_path: Path) -> None:
    exe = shutil.which("tiny-agents") or str(Path(sys.executable).with_name("tiny-agents"))
    if not Path(exe).exists():
        pytest.skip("the tiny-agents CLI is not installed")
    mcp_log = tmp_path / "mcp-calls.jsonl"
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    config = {"model": MODEL, "endpointUrl": tools_server.base_url, "servers": [_mcp_server(mcp_log)]}
    (agent_dir / "agent.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}

    def finished(out: str) -> bool:  # the CLI prompts again when the turn is over
        return out.count("»") >= 2

    # stdin stays open: at EOF tiny-agents does not exit but re-sends empty user turns
    proc = subprocess.Popen(
        [exe, "run", str(agent_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"Can you check the weather in Accra?\n")
        proc.stdin.flush()
        out = _read_until(proc, finished, TURN_TIMEOUT)
    finally:  # the whole group: the CLI and the MCP server it started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    result = _one_weather_call(mcp_log, repeats=True)
    # the CLI prints the tool result, then streams the model's answer, then prompts again
    assert result in out, out
    answer = out.split(result, 1)[1].split("»", 1)[0]
    assert _temperature(result) in answer, out
