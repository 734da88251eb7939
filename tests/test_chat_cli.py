"""End-to-end tests of ``chatref chat``: the real CLI in a pseudo-terminal (pexpect) against the
real reference server with the tiny model.

Two ways in: the chat starting its own server (no ``--base-url``), and the chat talking to the
session's shared server through ``--base-url``. Every ``expect`` has a timeout; the transcript
is attached to any failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pexpect
import pytest

from fixtures.think_data import QUESTIONS
from reference.presets import THINK_MODEL, get_preset, materialize
from tests.helpers import TINY
from tests.server import free_port

REPO = Path(__file__).resolve().parents[1]
PROMPT = re.compile(r"you(?:\x1b\[0m)?> ")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
# A frame of the live view that starts with text rather than the spinner (braille) or a cursor move.
FIRST_TEXT = re.compile("\x1b\\[2K[^\u2800-\u28ff\x1b]")
STARTUP = 120  # seconds for the background server to load the tiny model
ANSWER = 60  # seconds for one short answer


class Chat:
    """A ``chatref chat`` process in a pseudo-terminal, with its transcript kept for messages."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        env.pop("OPENAI_API_KEY", None)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "reference.cli.main", "chat", *args],
            cwd=str(cwd),
            env=env,
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(40, 200),
            timeout=ANSWER,
        )
        self.log: list[str] = []
        self.child.logfile_read = self

    # pexpect's logfile protocol
    def write(self, data: str) -> None:
        self.log.append(data)

    def flush(self) -> None:
        pass

    def transcript(self) -> str:
        return ANSI.sub("", "".join(self.log))

    def expect(self, pattern: str | re.Pattern[str], timeout: float = ANSWER) -> re.Match[str]:
        try:
            self.child.expect(pattern, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            kind = "timed out" if isinstance(exc, pexpect.TIMEOUT) else "the chat exited"
            pytest.fail(f"{kind} waiting for {pattern!r}; transcript:\n{self.transcript()[-4000:]}")
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def command(self, line: str, expect: str, timeout: float = ANSWER) -> re.Match[str]:
        """Send a line, wait for ``expect`` then for the next prompt."""
        self.child.sendline(line)
        match = self.expect(expect, timeout)
        self.expect(PROMPT, timeout)
        return match

    def exit_status(self, timeout: float = 30) -> int | None:
        try:
            self.child.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            pytest.fail(f"the chat did not exit; transcript:\n{self.transcript()[-4000:]}")
        self.child.close()
        return self.child.exitstatus

    def kill(self) -> None:
        if self.child.isalive():
            self.child.close(force=True)


Spawn = Callable[[list[str]], Chat]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start chats in ``tmp_path``; any still running at the end is killed."""
    chats: list[Chat] = []

    def start(args: list[str]) -> Chat:
        chats.append(Chat(args, tmp_path))
        return chats[-1]

    yield start
    for chat in chats:
        chat.kill()


def port_closed(port: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.2)
    return False


def generation_ends(base_url: str, within: float) -> bool:
    """Whether the server's live sequences for the tiny model drop to 0 (``/health`` counts them)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if httpx.get(base_url + "/health", timeout=5).json()["models"].get(TINY, 0) == 0:
            return True
        time.sleep(0.1)
    return False


def test_chat_starts_its_own_server_and_runs_a_session(spawn: Spawn, tmp_path: Path) -> None:
    chat = spawn([TINY, "max_tokens=8", "seed=1", "temperature=1"])
    port = int(chat.expect(r"server ready at http://127\.0\.0\.1:(\d+)", STARTUP).group(1))
    chat.expect(PROMPT)

    chat.child.sendline("Hello there")
    chat.expect(r"answer cut off: max_tokens=8 reached")
    chat.expect(r"\[8 tokens · [\d.]+ s")
    chat.expect(PROMPT)

    chat.command("!set max_tokens=3 temperature=0", r"flags: max_tokens=3 seed=1 temperature=0\.0")
    chat.child.sendline("And now?")
    chat.expect(r"\[3 tokens · ")
    chat.expect(PROMPT)
    chat.command("!status", r"turns   2 \(4 messages\)")

    chat.command("!save notes", r"saved 2 turns to")
    saved = json.loads((tmp_path / "notes.json").read_text())
    assert saved["model"] == TINY
    assert saved["flags"] == {"max_tokens": 3, "seed": 1, "temperature": 0.0}
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant", "user", "assistant"]
    first_reply = saved["messages"][1]["content"]
    words = re.findall(r"[A-Za-z]{4,}", first_reply)
    assert words, f"expected words in the tiny model's reply, got {first_reply!r}"
    assert max(words, key=len) in chat.transcript()  # the reply that was saved is the one shown

    chat.command("!clear", "new conversation")
    chat.command("!status", r"turns   0 \(0 messages\)")
    chat.command("!load notes", r"loaded 2 turns \(4 messages\)")
    chat.command("!status", r"turns   2 \(4 messages\)")
    chat.command("!frobnicate", r"unknown command !frobnicate")

    chat.child.sendline("!exit")
    assert chat.exit_status() == 0
    assert port_closed(port), "the background server still listens after !exit"


def test_closing_the_terminal_stops_the_background_server(spawn: Spawn) -> None:
    chat = spawn([TINY])
    port = int(chat.expect(r"server ready at http://127\.0\.0\.1:(\d+)", STARTUP).group(1))
    chat.expect(PROMPT)
    chat.child.close(force=True)  # SIGHUP, as when the terminal window closes
    assert port_closed(port), "the background server outlived the chat"


def test_a_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "reference.cli.main", "chat", "no-such-model"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP,
    )
    assert result.returncode == 1
    assert "could not start the reference server for no-such-model" in result.stdout
    assert "no-such-model" in result.stdout.split("exited with", 1)[-1]  # the server's own reason


def test_ctrl_c_stops_an_answer_and_errors_keep_the_session(spawn: Spawn, base_url: str) -> None:
    chat = spawn(["--base-url", base_url + "/v1", TINY, "max_tokens=400", "temperature=1", "seed=3"])
    chat.expect(PROMPT)

    chat.child.sendline("Tell me a very long story")
    chat.expect(FIRST_TEXT)  # the live view shows text, no longer the spinner: tokens are arriving
    chat.child.sendintr()  # well inside the 400 tokens (the tiny model writes ~30-100 tokens/s)
    chat.expect(r"answer stopped \(Ctrl-C\)")
    chat.expect(PROMPT)
    assert generation_ends(base_url, within=5.0), "the server still generates after Ctrl-C"
    chat.command("!status", r"turns   1 \(2 messages\)")  # the partial answer stays

    chat.command("!model no-such-model", r"model: no-such-model \(was tiny-random-llama\)")
    chat.child.sendline("hi")
    chat.expect(r"✗ server error 4\d\d: .*no-such-model")
    chat.expect(r"not added to the conversation")
    chat.expect(PROMPT)

    chat.command("!model tiny-random-llama", r"model: tiny-random-llama")
    chat.command("!set max_tokens=2 stop=\\n\\n", r'flags: .*max_tokens=2 .*stop="\\n\\n"')
    chat.child.sendline("hi again")
    chat.expect(r"\[\d tokens · ")
    chat.expect(PROMPT)
    chat.command("!status", r"turns   2 \(4 messages\)")

    chat.child.sendeof()  # Ctrl-D
    assert chat.exit_status() == 0


def test_a_dropped_connection_is_reported_and_the_session_goes_on(spawn: Spawn) -> None:
    chat = spawn(["--base-url", f"http://127.0.0.1:{free_port()}/v1", TINY])
    chat.expect(PROMPT)
    chat.child.sendline("anyone there?")
    chat.expect(r"✗ connection error")
    chat.expect(PROMPT)
    chat.command("!status", r"turns   0 \(0 messages\)")
    chat.child.sendline("!exit")
    assert chat.exit_status() == 0


def test_a_background_server_that_dies_is_reported_and_the_session_goes_on(spawn: Spawn) -> None:
    chat = spawn([TINY])
    chat.expect(r"server ready", STARTUP)
    chat.expect(PROMPT)
    pid = int(chat.command("!status", r"started by chat, pid (\d+)").group(1))
    os.kill(pid, signal.SIGKILL)
    chat.child.sendline("still there?")
    chat.expect(r"✗ connection error")
    chat.expect(r"the background server exited with code -9")
    chat.expect(PROMPT)
    chat.command("!status", r"turns   0 \(0 messages\)")
    chat.child.sendline("!exit")
    assert chat.exit_status() == 0


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_tool_calls_are_shown_and_answered(spawn: Spawn, base_url: str, tmp_path: Path) -> None:
    (tmp_path / "tools.json").write_text(json.dumps([WEATHER_TOOL]))
    chat = spawn(
        [
            "--base-url",
            base_url + "/v1",
            TINY,
            "--tools",
            "tools.json",
            "tool_choice=get_weather",
            "max_tokens=60",
        ]
    )
    chat.expect(PROMPT)
    chat.child.sendline("What is the weather in Paris?")
    chat.expect(r"tool call: \S*get_weather\S* \S*call_\w+")  # the forced call, drawn as a panel
    chat.expect(r"answer with !tool RESULT")
    chat.expect(PROMPT)
    chat.command("next question", r"waiting for a tool result")  # not sent: the call needs its result

    chat.command("!set tool_choice=none max_tokens=5", r"tool_choice=\"none\"")
    chat.child.sendline("!tool 18 C and sunny")
    chat.expect(r"result of get_weather \(call_\w+\) added")
    chat.expect(r"\[5 tokens · ")  # and the model answered it
    chat.expect(PROMPT)
    chat.command("!save tools", r"saved 1 turns to")
    messages = json.loads((tmp_path / "tools.json").read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    call = messages[1]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]).keys() == {"city"}
    assert messages[2] == {"role": "tool", "tool_call_id": call["id"], "content": "18 C and sunny"}
    chat.child.sendline("!exit")
    assert chat.exit_status() == 0


def test_reasoning_is_shown_dimmed_and_apart_from_the_answer(spawn: Spawn, tmp_path: Path) -> None:
    preset = get_preset(THINK_MODEL)
    assert preset is not None
    materialize(preset)  # the chat's own server would build it on first use, past STARTUP
    _, thought, answer = QUESTIONS[0]
    chat = spawn([THINK_MODEL, "temperature=0"])
    chat.expect(r"server ready", STARTUP)
    chat.expect(PROMPT)
    chat.child.sendline(QUESTIONS[0][0])
    chat.expect(r"\[\d+ tokens · ")
    chat.expect(PROMPT)
    final = "".join(chat.log).rsplit("2 + 2?", 1)[-1]  # what came after the question was typed
    dim = re.search(r"\x1b\[[0-9;]*\b2\b[0-9;]*m(" + re.escape(thought) + ")", final)
    assert dim, f"the thoughts are not dimmed: {final!r}"
    text = ANSI.sub("", final)
    assert f"thinking: {thought}\n\n{answer}" in text.replace(" \n", "\n"), text
    chat.command("!save think", r"saved 1 turns to")
    saved = json.loads((tmp_path / "think.json").read_text())["messages"]
    assert saved[1] == {"role": "assistant", "content": answer}  # thoughts are not sent back
    chat.child.sendline("!exit")
    assert chat.exit_status() == 0
