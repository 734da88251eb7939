"""``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``: the Responses API.

A request becomes the internal chat request (:mod:`reference.responses.translate`) and runs
through the same generation as chat completions; a stored response is what a later
``previous_response_id`` continues from.
"""

from __future__ import annotations

from litestar import Request, delete, get, post
from litestar.response import Response, Stream

from reference.errors import APIError, NotFound
from reference.generation import Generation, start
from reference.registry import Registry, ServedModel
from reference.responses.render import ResponseBuilder, collect_response, response_events
from reference.responses.schemas import ResponseDeleted, ResponseObject, ResponseRequest
from reference.responses.store import ResponseStore, Stored
from reference.responses.translate import output_messages, renamed, shell, to_chat
from reference.routes.running import begin, json_response, sse_response
from reference.schemas import Message

__all__ = ["create_response", "delete_response", "get_response"]


def _history(store: ResponseStore, previous: str | None) -> list[Message]:
    if previous is None:
        return []
    stored = store.get(previous)
    if stored is None:
        raise NotFound(
            f"Previous response with id {previous!r} not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return list(stored.conversation)


@post("/responses", status_code=200)
async def create_response(
    request: Request,
    data: ResponseRequest,
    registry: Registry,
    responses: ResponseStore,
    metrics: bool,
    request_timeout: float | None,
) -> Response[bytes] | Stream:
    chat, conversation = to_chat(data, _history(responses, data.previous_response_id))

    async def start_on(served: ServedModel) -> Generation:
        try:
            return await start(chat, served)
        except APIError as exc:
            raise renamed(exc) from None

    running = await begin(registry, data.model, start_on, metrics=metrics, request_timeout=request_timeout)
    gen = running[0]

    def keep(r: ResponseObject) -> None:
        if r.store:
            responses.put(Stored(r, [*conversation, *output_messages(r.output)]))

    stream = bool(data.stream)
    builder = ResponseBuilder(shell(data, gen.meta.model), gen.meta, streaming=stream, on_done=keep)
    if stream:
        return sse_response(running, response_events(builder, gen.deltas))
    return await json_response(request, running, collect_response(builder, gen.deltas))


def _stored(store: ResponseStore, response_id: str) -> Stored:
    stored = store.get(response_id)
    if stored is None:
        raise NotFound(f"Response with id {response_id!r} not found.", param="response_id")
    return stored


@get("/responses/{response_id:str}")
async def get_response(response_id: str, responses: ResponseStore) -> ResponseObject:
    return _stored(responses, response_id).response


@delete("/responses/{response_id:str}", status_code=200)
async def delete_response(response_id: str, responses: ResponseStore) -> ResponseDeleted:
    _stored(responses, response_id)
    responses.delete(response_id)
    return ResponseDeleted(response_id)
