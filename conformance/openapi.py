"""An OpenAPI document for /chat/completions and /models built at run time from the SDK's types.

Owns the translation of the ``openai`` package's pydantic types into OpenAPI 3.1 (request
schemas closed with ``additionalProperties: false``, SSE bodies as ``[DONE]`` or a chunk, 4xx
answers as the error envelope) and the fixes the official spec needs for a local server.
Knows nothing about HTTP or schemathesis.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from openai.types import ErrorObject, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from pydantic import TypeAdapter

__all__ = ["CORE_PARAMS", "close_objects", "official_document", "sdk_document"]

REF = "#/components/schemas/{model}"
# Request fields a chat server is expected to understand; others are left out to keep generation bounded.
CORE_PARAMS = (
    "messages",
    "model",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "n",
    "parallel_tool_calls",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
)


def close_objects(node: Any) -> Any:
    """Set ``additionalProperties: false`` on every object schema that lists properties."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            close_objects(v)
    elif isinstance(node, list):
        for v in node:
            close_objects(v)
    return node


def _sse(chunk_ref: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": {"anyOf": [{"const": "[DONE]"}, chunk_ref]}}


def sdk_document() -> dict[str, Any]:
    """The document for POST /chat/completions, GET /models and GET /models/{model}."""
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"$ref": REF.format(model="ErrorObject")}},
    }
    keyed, defs = TypeAdapter.json_schemas(
        [
            ("request", "validation", TypeAdapter(CompletionCreateParamsBase)),
            ("completion", "validation", TypeAdapter(ChatCompletion)),
            ("chunk", "validation", TypeAdapter(ChatCompletionChunk)),
            ("model", "validation", TypeAdapter(Model)),
            ("error", "validation", TypeAdapter(ErrorObject)),
        ],
        ref_template=REF,
    )
    schemas = copy.deepcopy(defs.get("$defs", {}))
    request = copy.deepcopy(schemas.get("CompletionCreateParamsBase") or keyed[("request", "validation")])
    request["properties"] = {k: v for k, v in request["properties"].items() if k in CORE_PARAMS}
    request["properties"]["stream"] = {"anyOf": [{"type": "boolean"}, {"type": "null"}]}
    request["required"] = ["messages", "model"]
    close_objects(request)
    # The top level stays open: clients send vendor extras, and servers (vLLM, llama.cpp's,
    # the reference) rightly tolerate them. Everything nested is closed.
    request["additionalProperties"] = True
    for name, schema in schemas.items():  # request-side definitions are closed too
        if (name.startswith("ChatCompletion") and name.endswith("Param")) or name in ("FunctionDefinition",):
            close_objects(schema)
    schemas["ChatRequest"] = request
    schemas["ErrorResponse"] = error
    chunk_ref = {"$ref": REF.format(model="ChatCompletionChunk")}
    err_resp = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
    }
    model_list = {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": REF.format(model="Model")}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "OpenAI chat API from the openai SDK types", "version": "1"},
        "paths": {
            "/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": REF.format(model="ChatRequest")}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "completion",
                            "content": {
                                "application/json": {"schema": {"$ref": REF.format(model="ChatCompletion")}},
                                "text/event-stream": {"schema": _sse(chunk_ref)},
                            },
                        },
                        "4XX": err_resp,
                    },
                }
            },
            "/models": {
                "get": {
                    "operationId": "listModels",
                    "responses": {
                        "200": {
                            "description": "models",
                            "content": {"application/json": {"schema": model_list}},
                        },
                        "4XX": err_resp,
                    },
                }
            },
            "/models/{model}": {
                "get": {
                    "operationId": "retrieveModel",
                    "parameters": [
                        {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "model",
                            "content": {"application/json": {"schema": {"$ref": REF.format(model="Model")}}},
                        },
                        "4XX": err_resp,
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }


def official_document(path: Path) -> dict[str, Any]:
    """OpenAI's spec restricted to createChatCompletion, fixed for a local server."""
    doc = json.loads(path.read_text())
    doc.pop("security", None)
    doc["servers"] = []
    op = doc["paths"]["/chat/completions"]["post"]
    op.pop("security", None)
    doc["paths"] = {"/chat/completions": {"post": op}}
    doc.setdefault("components", {}).setdefault("schemas", {})
    ok = op["responses"]["200"]["content"]
    if "text/event-stream" in ok:
        ok["text/event-stream"]["schema"] = _sse(ok["text/event-stream"]["schema"])
    op["responses"]["4XX"] = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    return doc
