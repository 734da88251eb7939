"""Conversation state of ``chatref chat`` and its JSON file format.

Owns the session (model, system prompt, generation flags, tools, the message list), the
request messages built from it, and saving/loading a conversation as JSON — including how a
bare name such as ``!save notes`` becomes a file path. Knows nothing of the terminal, the
server or the network.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference.cli.chat_flags import Flags

__all__ = [
    "FILE_FORMAT",
    "ChatSession",
    "ConversationFile",
    "SessionFileError",
    "default_save_name",
    "load_conversation",
    "resolve_load_path",
    "resolve_save_path",
    "save_conversation",
]

FILE_FORMAT = "chatref-chat/1"
Message = dict[str, Any]
_ROLES = {"system", "developer", "user", "assistant", "tool"}


class SessionFileError(ValueError):
    """A conversation file that cannot be read or written; the message is meant for the user."""


@dataclass
class ChatSession:
    model: str
    flags: Flags = field(default_factory=dict)
    system: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)  # user / assistant / tool, no system

    @property
    def turns(self) -> int:
        """Number of user messages so far."""
        return sum(1 for m in self.messages if m.get("role") == "user")

    def request_messages(self) -> list[Message]:
        """The ``messages`` field of the next request: the system prompt first, then the turns."""
        head: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        return head + list(self.messages)

    def add_user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def add_assistant(self, content: str | None, tool_calls: list[dict[str, Any]] | None = None) -> None:
        message: Message = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        self.messages.append(message)

    def add_tool_result(self, tool_call_id: str, content: str) -> None:
        self.messages.append({"role": "tool", "tool_call_id": tool_call_id, "content": content})

    def pending_tool_calls(self) -> list[dict[str, Any]]:
        """Tool calls of the last assistant message that no tool message has answered yet."""
        for index in range(len(self.messages) - 1, -1, -1):
            message = self.messages[index]
            if message.get("role") == "assistant":
                answered = {
                    m.get("tool_call_id") for m in self.messages[index + 1 :] if m.get("role") == "tool"
                }
                return [c for c in message.get("tool_calls") or [] if c.get("id") not in answered]
        return []

    def drop_last_user(self) -> None:
        """Undo a user message whose answer failed, so the conversation stays well-formed."""
        if self.messages and self.messages[-1].get("role") == "user":
            self.messages.pop()

    def clear(self) -> None:
        """A new conversation: the turns go; model, system prompt, flags and tools stay."""
        self.messages.clear()


# ---- files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationFile:
    """What a conversation file held: its messages split into system prompt and turns."""

    system: str | None
    messages: list[Message]
    model: str | None = None
    flags: Flags = field(default_factory=dict)


def default_save_name(now: float | None = None) -> str:
    return time.strftime("chat-%Y%m%d-%H%M%S.json", time.localtime(now))


def resolve_save_path(name: str | None, cwd: Path, now: float | None = None) -> Path:
    """Where ``!save [NAME]`` writes: a bare name without a suffix gets ``.json``; relative → ``cwd``."""
    if not name:
        return cwd / default_save_name(now)
    path = Path(name).expanduser()
    if not path.suffix:
        path = path.with_name(path.name + ".json")
    return path if path.is_absolute() else cwd / path


def resolve_load_path(name: str, cwd: Path) -> Path:
    """Where ``!load NAME`` reads: ``NAME`` if it exists, else ``NAME.json``, relative to ``cwd``."""
    path = Path(name).expanduser()
    path = path if path.is_absolute() else cwd / path
    if not path.exists() and not path.suffix:
        with_json = path.with_name(path.name + ".json")
        if with_json.exists():
            return with_json
    return path


def save_conversation(session: ChatSession, path: Path) -> None:
    document = {
        "format": FILE_FORMAT,
        "model": session.model,
        "flags": session.flags,
        "messages": session.request_messages(),
    }
    if session.tools:
        document["tools"] = session.tools
    if path.is_dir():
        raise SessionFileError(f"{path} is a directory; give a file name")
    try:
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise SessionFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_message(index: int, message: object) -> Message:
    if not isinstance(message, dict):
        raise SessionFileError(f"message {index} is not an object")
    role = message.get("role")
    if role not in _ROLES:
        raise SessionFileError(f"message {index} has role {role!r}; expected one of {sorted(_ROLES)}")
    content = message.get("content")
    if not (content is None or isinstance(content, str | list)):
        raise SessionFileError(f"message {index}: content must be text, a list of parts or null")
    return message


def load_conversation(path: Path) -> ConversationFile:
    """Read a file written by ``!save``, or a plain JSON list of OpenAI chat messages."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionFileError(f"no such file: {path}") from None
    except OSError as exc:
        raise SessionFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SessionFileError(f"{path} is not JSON ({exc.msg}, line {exc.lineno})") from None
    if isinstance(document, list):
        document = {"messages": document}
    if not isinstance(document, dict) or not isinstance(document.get("messages"), list):
        raise SessionFileError(f"{path} holds no 'messages' list")
    messages = [_check_message(i, m) for i, m in enumerate(document["messages"])]
    system: str | None = None
    if (
        messages
        and messages[0]["role"] in ("system", "developer")
        and isinstance(messages[0]["content"], str)
    ):
        system = messages[0]["content"]
        messages = messages[1:]
    model = document.get("model")
    flags = document.get("flags")
    return ConversationFile(
        system=system,
        messages=messages,
        model=model if isinstance(model, str) else None,
        flags=flags if isinstance(flags, dict) else {},
    )
