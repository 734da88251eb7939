"""The tool-trained fixture model, tested as a model: greedy replies to held-out prompts.

Prompts use cities, numbers and phrasings absent from the training data, and go through the
server's own prompt rendering (``render_prompt`` with the generic fallback).  Calls must
parse and name the right tool with the right arguments for most prompts; requests no tool
fits must get text; a tool result must come back in the answer.  Slow: builds the model on
first use (minutes, then cached).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fixtures.tool_eval import generate_reply, parse_calls
from reference.presets import TOOLS_MODEL, get_preset, materialize
from reference.protocol.tools.fallback import CALL_OPEN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def tool(name: str, description: str, **params: str) -> dict[str, Any]:
    properties = {key: {"type": typ} for key, typ in params.items()}
    schema = {"type": "object", "properties": properties, "required": list(params)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


WEATHER = tool("get_weather", "Get the current weather for a city.", city="string")
TIME = tool("get_local_time", "Get the current local time in a city.", city="string")
CALC = tool("calculate", "Evaluate an arithmetic expression.", expression="string")
CONVERT = tool(
    "convert_units", "Convert a value between units.", value="number", from_unit="string", to_unit="string"
)
SEARCH = tool("web_search", "Search the web and return the top result.", query="string")
EXIT = [
    tool("task_complete", "Call this tool when the task given by the user is complete"),
    tool("ask_question", "Ask the user for more info required to solve or clarify their problem."),
]

CALL_CASES = [  # (user request, tools offered, expected call)
    ("What's the weather like in Reykjavik today?", [WEATHER, CALC], ("get_weather", {"city": "Reykjavik"})),
    ("What time is it in Hanoi?", [WEATHER, TIME, SEARCH], ("get_local_time", {"city": "Hanoi"})),
    ("What is 348 * 17?", [CALC, TIME], ("calculate", {"expression": "348 * 17"})),
    (
        "Convert 42 km to miles.",
        [WEATHER, CONVERT],
        ("convert_units", {"value": 42, "from_unit": "km", "to_unit": "miles"}),
    ),
    ("Is it cold in Montevideo right now?", [*EXIT, WEATHER], ("get_weather", {"city": "Montevideo"})),
]
TEXT_CASES = [
    ("Hey there! Who are you?", [WEATHER]),
    ("What is the capital of Italy?", [CALC, TIME]),
    ("Please write one sentence about the sea.", [*EXIT, WEATHER]),
]


@pytest.fixture(scope="module")
def model_and_tokenizer() -> Iterator[tuple[Any, Any]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    preset = get_preset(TOOLS_MODEL)
    assert preset is not None
    directory = materialize(preset)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    yield model, tokenizer


def reply(mt: tuple[Any, Any], messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    return generate_reply(mt[0], mt[1], messages, tools)


def test_calls_the_fitting_tool_with_the_right_arguments(model_and_tokenizer: tuple[Any, Any]) -> None:
    right, seen = 0, []
    for request, tools, (name, arguments) in CALL_CASES:
        text = reply(model_and_tokenizer, [{"role": "user", "content": request}], tools)
        seen.append(text)
        right += parse_calls(text) == [{"name": name, "arguments": arguments}]
    assert right >= 4, seen


def test_answers_in_text_when_no_tool_fits(model_and_tokenizer: tuple[Any, Any]) -> None:
    for request, tools in TEXT_CASES:
        text = reply(model_and_tokenizer, [{"role": "user", "content": request}], tools)
        assert text.strip() and CALL_OPEN not in text, (request, text)


@pytest.mark.parametrize(
    ("request_text", "tools", "call", "result", "expected"),
    [
        (
            "How is the weather in Ljubljana?",
            [WEATHER],
            ("get_weather", {"city": "Ljubljana"}),
            "Weather in Ljubljana: foggy, 4°C",
            "4",
        ),
        ("What is 1234 - 99?", [CALC, SEARCH], ("calculate", {"expression": "1234 - 99"}), "1135", "1135"),
    ],
)
def test_answers_with_the_tool_result(
    model_and_tokenizer: tuple[Any, Any],
    request_text: str,
    tools: list[dict[str, Any]],
    call: tuple[str, dict[str, Any]],
    result: str,
    expected: str,
) -> None:
    name, arguments = call
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": request_text},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        },
        {"role": "tool", "content": result, "tool_call_id": "call_1"},
    ]
    text = reply(model_and_tokenizer, messages, tools)
    assert CALL_OPEN not in text and expected in text, text
