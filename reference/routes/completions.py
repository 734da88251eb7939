"""``POST /v1/completions``: legacy text completions, JSON or SSE, on the chat pipeline's engine."""

from __future__ import annotations

from litestar import Request, post
from litestar.response import Response, Stream

from reference.completions.prompts import CompletionRun, start_completion
from reference.completions.render import collect_completion, completion_events
from reference.completions.schemas import CompletionRequest
from reference.generation import Generation
from reference.registry import Registry, ServedModel
from reference.routes.running import begin, json_response, sse_response

__all__ = ["create_completion"]


@post("/completions", status_code=200)
async def create_completion(
    request: Request,
    data: CompletionRequest,
    registry: Registry,
    metrics: bool,
    request_timeout: float | None,
) -> Response[bytes] | Stream:
    runs: list[CompletionRun] = []

    async def start_on(served: ServedModel) -> Generation:
        runs.append(await start_completion(data, served))
        return runs[0].generation

    running = await begin(registry, data.model, start_on, metrics=metrics, request_timeout=request_timeout)
    run, gen = runs[0], running[0]
    if data.stream:
        return sse_response(running, completion_events(run, gen.deltas))
    return await json_response(request, running, collect_completion(run, gen.deltas))
