"""One answer of ``chatref chat``: the streamed request, its interruption and its failure.

Owns sending the conversation through the ``openai`` SDK with ``stream=True``, feeding the chunks
to an :class:`~reference.cli.chat_stream.Answer` and the renderer, closing the stream on Ctrl-C
(the server sees the disconnect and cancels the generation), turning any failure of the exchange
into a message, and recording the outcome in the session. Knows nothing of the command line,
the ``!commands`` or how the server was started.
"""

from __future__ import annotations

import contextlib
from typing import Any

import openai

from reference.cli.chat_flags import request_kwargs
from reference.cli.chat_render import Renderer
from reference.cli.chat_session import ChatSession
from reference.cli.chat_stream import Answer

__all__ = ["describe_error", "stream_answer"]


def describe_error(exc: BaseException) -> str:
    """One readable line for an SDK or transport error (the server's own message when it sent one)."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        message = None
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, dict) else None
        return f"server error {exc.status_code}: {message or exc.message}"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"connection error: {cause or exc.message}"
    if isinstance(exc, openai.APIError):
        return f"server error: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def stream_answer(client: openai.OpenAI, session: ChatSession, renderer: Renderer) -> Answer:
    """Ask for one answer and show it as it streams. Records it in the session unless it failed.

    Ctrl-C stops the answer: the stream is closed, so the server sees the disconnect and cancels.
    """
    kwargs = request_kwargs(session.flags)
    if session.tools:
        kwargs["tools"] = session.tools
    answer = Answer()
    stream: openai.Stream[Any] | None = None
    stopped = False
    error: BaseException | None = None
    with renderer.streaming(answer) as out:
        try:
            stream = client.chat.completions.create(
                model=session.model,
                messages=session.request_messages(),
                stream=True,
                stream_options={"include_usage": True},
                **kwargs,
            )  # type: ignore[call-overload]
            for chunk in stream:
                out.write(answer.add(chunk.to_dict()))
        except KeyboardInterrupt:
            stopped = True
        except Exception as exc:  # any failure of the exchange (server error, dropped connection,
            error = exc  # malformed stream) ends this answer, never the session
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
            answer.finish()
    renderer.final(answer, stopped=stopped or error is not None)
    if error is not None:
        session.drop_last_user()
        answer.error = describe_error(error)
        renderer.say("error", answer.error)
        renderer.say("info", "(that turn was not added to the conversation)")
        return answer
    if stopped:
        renderer.say("warn", "answer stopped (Ctrl-C); the request was cancelled")
        if not (answer.content or answer.calls):
            session.drop_last_user()
            renderer.say("info", "(nothing had arrived: that turn was not added to the conversation)")
            return answer
    session.add_assistant(answer.content or None, answer.message_tool_calls() or None)
    renderer.footer(answer, session.flags.get("max_tokens"), stopped=stopped)
    return answer
