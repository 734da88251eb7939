"""Proof that every check can fail: the suite runs under pytester against the fake server.

The defect-free fake must pass every check; each defect must make its intended checks fail
and (for ``exact`` defects) no other. Owns the defect table. Knows nothing about HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.tests.fakeserver import API_KEY, REASONER, FakeServer

__all__: list[str] = []

SUITE = str(Path(__file__).resolve().parents[1])
NO_SCHEMA = ["-k", "not test_schema"]
CALL_TOOLS = {
    "test_required_call_shape[json]",
    "test_required_call_shape[stream]",
    "test_named_tool_choice",
    "test_tool_choice_auto",
    "test_parallel_tool_calls_false",
    "test_streamed_tool_deltas",
    "test_parallel_tool_call_indices",
}
STOPS = {f"test_stop_trims[{m}-{k}]" for m in ("json", "stream") for k in ("string", "list")} | {
    "test_stop_several",
    "test_stop_overlapping",
    "test_stop_spanning_chunks",
}
LOGPROBS = {"test_logprobs_shape[json]", "test_logprobs_shape[stream]", "test_top_logprobs_ordering"}
SPLIT = {
    "test_reasoning_apart_from_content[json]",
    "test_reasoning_apart_from_content[stream]",
    "test_stream_agrees_with_json",
    "test_reasoning_streams_before_the_answer",
}
# defect -> (checks that must fail, whether no other check may fail)
DEFECTS: dict[str, tuple[set[str], bool]] = {
    "no_done": ({"test_ends_with_done"}, True),
    "data_after_done": ({"test_nothing_after_done"}, True),
    "bad_content_type": ({"test_content_type"}, True),
    "junk_line": ({"test_only_data_events"}, True),
    "role_every_delta": ({"test_role_in_first_delta_only"}, True),
    "no_role": ({"test_role_in_first_delta_only"}, True),
    "double_finish": ({"test_one_finish_reason_last"}, True),
    "id_changes": ({"test_shared_id_created_model"}, True),
    "usage_always": ({"test_no_usage_unless_requested", "test_include_usage_final_chunk"}, True),
    "usage_not_final": ({"test_include_usage_final_chunk"}, True),
    "stream_differs": ({"test_fold_equals_non_stream", "test_stream_agrees_with_json"}, True),
    "ignore_n": ({"test_n_choices[json]", "test_n_choices[stream]"}, True),
    "ignore_max_tokens": (
        {f"test_{n}_exact[{m}]" for n in ("max_tokens", "max_completion_tokens") for m in ("json", "stream")},
        True,
    ),
    "stop_not_trimmed": (STOPS, True),
    "ignore_stop": (STOPS, True),
    "ignore_seed": ({"test_seed_reproducible"}, True),
    "ignore_temperature": ({"test_temperature_samples"}, True),
    "ignore_top_p": ({"test_top_p_tiny_is_greedy"}, True),
    "stop_first_listed_only": ({"test_stop_several"}, True),
    "stop_earliest_start": ({"test_stop_overlapping"}, True),
    "stop_two_chunk_window": ({"test_stop_spanning_chunks"}, True),
    "logprobs_positive": (LOGPROBS, True),
    "top_logprobs_wrong_count": (LOGPROBS, True),
    "top_logprobs_duplicates": ({"test_top_logprobs_ordering"}, True),
    "ignore_logit_bias": ({"test_logit_bias_forces_token", "test_logit_bias_bans_token"}, True),
    "ignore_negative_bias": ({"test_logit_bias_bans_token"}, True),
    "ignore_frequency_penalty": ({"test_penalty_changes_output[frequency_penalty]"}, True),
    "ignore_presence_penalty": ({"test_penalty_changes_output[presence_penalty]"}, True),
    "stream_options_no_stream_ok": ({"test_stream_options_requires_stream"}, True),
    "tool_args_not_json": (CALL_TOOLS, True),
    "tool_id_every_delta": ({"test_streamed_tool_deltas"}, True),
    "ignore_parallel": ({"test_parallel_tool_calls_false"}, True),
    "tool_choice_none_ignored": ({"test_tool_choice_none", "test_tool_result_round_trip"}, True),
    "tool_index_gap": ({"test_parallel_tool_call_indices"}, True),
    "prompt_tokens_constant": ({"test_prompt_tokens_stable"}, True),
    "prompt_tokens_cached_discount": ({"test_prompt_tokens_stable"}, True),
    "usage_counts_top_logprobs": ({"test_completion_tokens_match_stream"}, True),
    "route_404_plain": ({"test_unknown_route"}, True),
    "method_405_plain": ({"test_wrong_method"}, True),
    "utf8_split": ({"test_multibyte_text"}, True),
    "pinned_sampling": ({"test_sampling_isolation"}, True),
    "cancel_ignored": ({"test_cancel_stops_generation"}, True),  # seen on /metrics
    "cancel_ignored+no_metrics": ({"test_cancel_stops_generation"}, True),  # seen in the next TTFT
    "undefined_tool_ok": ({"test_undefined_named_tool_rejected"}, True),
    "structured_not_json": (
        {f"test_json_{k}[{m}]" for k in ("object", "schema") for m in ("json", "stream")},
        True,
    ),
    "think_in_content": (SPLIT, True),
    "reasoning_in_content": (SPLIT, True),
    "reasoning_fields_differ": (SPLIT, True),
    "stream_reasoning_differs": ({"test_stream_agrees_with_json"}, True),
    "reasoning_after_content": ({"test_reasoning_streams_before_the_answer"}, True),
    "effort_unchecked": ({"test_reasoning_effort_validated"}, True),
    "template_kwargs_500": ({"test_unknown_template_kwargs_are_harmless"}, True),
    "model_404_wrong_code": ({"test_unknown_model", "test_error_before_stream_is_http"}, True),
    "context_500": ({"test_context_length_exceeded"}, True),
    "models_no_object": ({"test_list_shape"}, True),
    "retrieve_unknown_200": ({"test_retrieve_unknown"}, True),
    "auth+auth_ignored": (
        {f"test_{k}_key[{e}]" for k in ("missing", "wrong") for e in ("chat", "models")},
        True,
    ),
    "error_500": ({"test_invalid_request[temperature_range]", "test_malformed_body[not_json]"}, False),
    "no_envelope": ({"test_invalid_request[n_zero]", "test_unknown_model"}, False),
    "usage_wrong_total": ({"test_usage_present_and_sums"}, False),
    "created_float": ({"test_completion_validates[json]", "test_id_and_created"}, False),
    # /responses
    "resp_stream_by_default": (
        {"test_response_json_by_default", "test_responses_sdk_create_and_stream", "test_parse_text_format"},
        True,
    ),
    "resp_usage_wrong_total": ({"test_response_object", "test_stream_folds_to_the_response"}, False),
    "resp_ignore_max_output_tokens": ({"test_max_output_tokens"}, True),
    "resp_done_order": ({"test_response_event_order"}, True),
    "resp_done_text_differs": ({"test_stream_folds_to_the_response"}, True),
    "resp_no_sequence": ({"test_response_event_order"}, False),
    "resp_no_completed": (
        {
            "test_response_event_order",
            "test_responses_sdk_create_and_stream",
            "test_stream_folds_to_the_response",
            "test_streamed_function_call",
        },
        True,
    ),
    "resp_tool_args_not_json": ({"test_function_call_round_trip", "test_streamed_function_call"}, True),
    "resp_tools_ignored": ({"test_function_call_round_trip", "test_streamed_function_call"}, True),
    "resp_args_done_differs": ({"test_streamed_function_call"}, True),
    "resp_get_unknown_200": ({"test_retrieve_stored"}, False),
    "resp_store_false_kept": ({"test_store_false_is_not_kept"}, True),
    "resp_previous_ignored": ({"test_previous_response_id"}, True),
    "resp_format_ignored": ({"test_parse_text_format"}, True),
    # legacy /completions
    "cmpl_wrong_object": ({"test_completion_object[json]", "test_completion_object[stream]"}, False),
    "cmpl_ignore_max_tokens": (
        {f"test_completion_max_tokens_exact[{m}]" for m in ("json", "stream")},
        False,
    ),
    "cmpl_prompt_list_one": ({"test_prompt_list_and_n", "test_token_id_prompt"}, True),
    "cmpl_token_ids_500": ({"test_token_id_prompt"}, True),
    "cmpl_logprobs_positive": (
        {f"test_completion_logprobs_shape[{m}]" for m in ("json", "stream")}
        | {"test_completion_echo_scores_the_prompt"},
        True,
    ),
    "cmpl_ignore_echo": ({"test_completion_echo"}, True),
    "cmpl_no_done": ({"test_completion_stream_ends_with_done"}, True),
    "cmpl_usage_not_final": ({"test_completion_include_usage"}, True),
}


def run_suite(pytester: pytest.Pytester, url: str, *args: str) -> tuple[set[str], set[str], pytest.RunResult]:
    """Run the suite in-process; returns (failed test names, passed test names, result)."""
    report = pytester.path / "report.md"
    result = pytester.runpytest_inprocess(
        SUITE,
        "--base-url",
        url,
        "-q",
        "-p",
        "no:cacheprovider",
        "--conformance-report",
        str(report),
        "--conformance-timeout",
        "20",
        "--conformance-probe-timeout",  # a one-at-a-time fake may still be busy with a dropped stream
        "20",
        "--conformance-reasoning-model",
        REASONER,
        *args,
    )
    passed, _, failed = result.reprec.listoutcomes()  # type: ignore[attr-defined]
    return ({r.nodeid.split("::")[-1] for r in failed}, {r.nodeid.split("::")[-1] for r in passed}, result)


def test_clean_server_passes_everything(pytester: pytest.Pytester, fake: FakeServer) -> None:
    failed, passed, result = run_suite(
        pytester, fake.url("auth"), "--api-key", API_KEY, "--conformance-max-examples", "10"
    )
    assert not failed, f"the defect-free fake fails {sorted(failed)}"
    data = json.loads((pytester.path / "report.json").read_text())
    assert data["totals"]["fail"] == 0 and data["totals"]["checks"] >= 60
    assert data["totals"]["pass"] == len(passed) >= 60
    assert any("conformance" in line for line in result.outlines)
    assert "| tools |" in (pytester.path / "report.md").read_text()
    assert "| reasoning |" in (pytester.path / "report.md").read_text()


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_defect_is_caught(pytester: pytest.Pytester, fake: FakeServer, defect: str) -> None:
    expected, exact = DEFECTS[defect]
    extra = ["--api-key", API_KEY] if "auth" in defect.split("+") else []
    failed, _, _ = run_suite(pytester, fake.url(*defect.split("+")), *NO_SCHEMA, *extra)
    missing = expected - failed
    assert not missing, f"defect {defect!r} not caught by {sorted(missing)} (failed: {sorted(failed)})"
    if exact:
        assert failed == expected, f"defect {defect!r} also fails {sorted(failed - expected)}"


def test_schemathesis_catches_server_errors(pytester: pytest.Pytester, fake: FakeServer) -> None:
    failed, _, _ = run_suite(
        pytester, fake.url("error_500"), "-k", "test_sdk_schema", "--conformance-max-examples", "10"
    )
    assert "test_sdk_schema[createChatCompletion-negative]" in failed


def test_fuzzing_counts_every_case(pytester: pytest.Pytester, fake: FakeServer) -> None:
    """With --conformance-fuzz-examples the run keeps sending after failures and reports figures."""
    argv = ["-k", "test_sdk_schema and negative", "--conformance-fuzz-examples", "12"]
    failed, _, result = run_suite(pytester, fake.url("error_500"), *argv)
    assert failed == {"test_sdk_schema[createChatCompletion-negative]"}
    figures = json.loads((pytester.path / "report.json").read_text())["schemathesis"]
    (run,) = figures["runs"]
    assert run["run"] == "sdk createChatCompletion negative" and run["cases"] == 12
    assert run["server_errors"] == run["statuses"].get("500", 0) > 3  # past the bounded run's stop at 3
    assert figures["totals"]["server_errors"] == run["server_errors"] and run["examples"]["server_errors"]
    assert any(line.startswith("sdk createChatCompletion negative") for line in result.outlines)
    assert "## schemathesis figures" in (pytester.path / "report.md").read_text()


def test_unsupported_is_not_failure(pytester: pytest.Pytester, fake: FakeServer) -> None:
    """A server refusing tools with a 400 envelope is reported unsupported, not failed."""
    failed, _, _ = run_suite(pytester, fake.url("refuse_tools"), "-k", "test_tools")
    assert not failed
    data = json.loads((pytester.path / "report.json").read_text())
    tools = next(f for f in data["features"] if f["feature"] == "tools")
    assert tools["unsupported"] == tools["checks"] and tools["status"] == "unsupported"


def test_no_reasoning_model_is_unsupported(pytester: pytest.Pytester, fake: FakeServer) -> None:
    """Without a reasoning model named, the checks that need one report unsupported, not failed."""
    failed, passed, _ = run_suite(
        pytester, fake.url(), "-k", "test_reasoning", "--conformance-reasoning-model", ""
    )
    assert not failed and passed == {
        "test_reasoning_effort_validated",
        "test_unknown_template_kwargs_are_harmless",
    }
    data = json.loads((pytester.path / "report.json").read_text())
    reasoning = next(f for f in data["features"] if f["feature"] == "reasoning")
    assert reasoning["unsupported"] == len(SPLIT) and reasoning["passed"] == 2


@pytest.mark.parametrize(
    ("route", "module"), [("responses", "test_responses"), ("completions", "test_completions")]
)
def test_missing_route_is_unsupported(
    pytester: pytest.Pytester, fake: FakeServer, route: str, module: str
) -> None:
    """A server without the route (a 404 envelope) has that whole group reported unsupported."""
    failed, _, _ = run_suite(pytester, fake.url(f"no_{route}"), "-k", module)
    assert not failed
    data = json.loads((pytester.path / "report.json").read_text())
    row = next(f for f in data["features"] if f["feature"] == route)
    assert row["unsupported"] == row["checks"] >= 10 and row["status"] == "unsupported"


def test_silently_ignored_is_failure(pytester: pytest.Pytester, fake: FakeServer) -> None:
    failed, _, _ = run_suite(pytester, fake.url("ignore_tools"), "-k", "test_tools")
    assert "test_required_call_shape[json]" in failed


def test_hung_server_fails_fast(pytester: pytest.Pytester, fake: FakeServer) -> None:
    failed, _, _ = run_suite(
        pytester, fake.url("hang"), "-k", "test_greedy_deterministic", "--conformance-timeout", "1"
    )
    assert failed == {"test_greedy_deterministic"}


def _outcomes(pytester: pytest.Pytester) -> dict[str, tuple[str, str]]:
    """check name -> (outcome, reason), from the JSON report of the last run."""
    checks = json.loads((pytester.path / "report.json").read_text())["checks"]
    return {c["nodeid"].split("::")[-1]: (c["outcome"], c["reason"]) for c in checks}


def test_info_is_not_failure(pytester: pytest.Pytester, fake: FakeServer) -> None:
    """A tool call whose arguments come whole in one delta is info: reported, never failing the run."""
    failed, _, result = run_suite(
        pytester, fake.url("tool_args_one_delta"), "-k", "test_tool_arguments_streamed"
    )
    assert not failed and result.ret == 0
    outcome, reason = _outcomes(pytester)["test_tool_arguments_streamed"]
    assert outcome == "info" and "one delta" in reason
    totals = json.loads((pytester.path / "report.json").read_text())["totals"]
    assert (totals["info"], totals["fail"], totals["error"]) == (1, 0, 0)
    assert any("1 info" in line for line in result.outlines)
    assert "- **info** `" in (pytester.path / "report.md").read_text()


@pytest.mark.timeout(300)  # the bound on the whole run against a wedged server
def test_wedged_server_errors_fast_then_resumes(pytester: pytest.Pytester, fake: FakeServer) -> None:
    """After its 3rd chat request the fake answers nothing for 5 s: the checks probed meanwhile are
    errors naming the last check that ran, and once it answers again the checks pass again."""
    argv = ["-k", "test_chat", "--conformance-timeout", "3", "--conformance-probe-timeout", "1"]
    failed, passed, _ = run_suite(pytester, fake.url("wedge3x5", "resumes"), *argv)
    outcomes = _outcomes(pytester)
    names = list(outcomes)  # in the order they ran
    errors = [n for n in names if outcomes[n][0] == "error"]
    assert failed == set(errors) and errors, outcomes
    assert outcomes["test_id_and_created"][0] == "pass"  # the 3rd chat request, answered
    assert all(
        "server stopped answering after test_chat.py::test_id_and_created" in outcomes[n][1] for n in errors
    )
    assert names.index(errors[0]) == names.index("test_id_and_created") + 1
    assert passed & set(names[names.index(errors[-1]) + 1 :]), "no check passed after the server recovered"


@pytest.mark.timeout(300)
def test_dead_server_is_not_probed_forever(pytester: pytest.Pytester, fake: FakeServer) -> None:
    """A server that never answers again costs at most --conformance-recovery-wait of probing."""
    argv = ["-k", "test_chat", "--conformance-timeout", "3", "--conformance-probe-timeout", "1",
            "--conformance-recovery-wait", "2"]  # fmt: skip
    failed, _, _ = run_suite(pytester, fake.url("wedge3x900", "dead"), *argv)
    outcomes = _outcomes(pytester)
    names = list(outcomes)
    after = names[names.index("test_id_and_created") + 1 :]
    assert failed == set(after) and all(outcomes[n][0] == "error" for n in after)
    assert "not probed any more" in outcomes[after[-1]][1]
