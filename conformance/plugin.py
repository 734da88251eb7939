"""pytest plugin: command-line options, the target fixture, markers and the report hooks.

Loaded in every pytest run of an environment where chatref is installed (entry point
``pytest11``), so it is inert unless conformance tests are collected: it registers options
and a marker, and does nothing else until a test carrying ``@pytest.mark.conformance`` runs.
Owns option parsing, the session ``conformance_target`` fixture (an external server or the
self-started reference server), the session's schemathesis figures, the order of the checks
(those marked ``conformance_disruptive`` last), the probe before each check (``watch``), how
outcomes are classified and the report. Knows nothing about individual checks.

Outcomes, with pytest's public API only: a check ends as "unsupported" or "info" by
``pytest.skip`` with a reason starting with that word (``api.Api.refuse``, ``api.info``); this
module reports them under their own names and letters (``u``, ``i``), never as failures. A
check that could not run because the server stopped answering is an error of its setup.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance.checks import ConformanceError
from conformance.client import Target
from conformance.fuzz import Figures
from conformance.launcher import DEFAULT_MODELS, REASONING_MODEL, start_reference
from conformance.report import Report
from conformance.watch import ServerDown, Watch

__all__ = [
    "conformance_figures",
    "conformance_target",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_ignore_collect",
    "pytest_report_teststatus",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
    "pytest_terminal_summary",
]

PACKAGE_DIR = Path(__file__).resolve().parent
REPORT_KEY = pytest.StashKey[Report]()
FIGURES_KEY = pytest.StashKey[Figures]()
WATCH_KEY = pytest.StashKey[Watch]()
SKIP_OUTCOMES = {"unsupported": ("u", "UNSUPPORTED"), "info": ("i", "INFO")}  # skip-reason prefix -> status
FUZZ_SECONDS_PER_CASE = 2.0  # pytest-timeout of a fuzzing test: this much per example, at least
OPTIONS: list[tuple[str, str | None, dict[str, Any]]] = [
    (
        "--conformance-base-url",
        "--base-url",
        {
            "default": None,
            "metavar": "URL",
            "help": "base URL of the server under test, ending in /v1 (default: start the reference server)",
        },
    ),
    (
        "--conformance-model",
        "--model",
        {
            "default": None,
            "metavar": "NAME",
            "help": "model id to request (default: the first id from GET /models; "
            f"self-started: {DEFAULT_MODELS[0]})",
        },
    ),
    (
        "--conformance-language-model",
        None,
        {
            "default": None,
            "metavar": "NAME",
            "help": "model used by the few checks that need real language: structured output, penalties, "
            f"one reply (default: --model; self-started: {DEFAULT_MODELS[1]})",
        },
    ),
    (
        "--conformance-reasoning-model",
        None,
        {
            "default": None,
            "metavar": "NAME",
            "help": "a model that thinks before answering (<think>…</think>) and that the server serves "
            "with its reasoning split; the `reasoning` checks report unsupported without it "
            f"(default: none; self-started: {REASONING_MODEL})",
        },
    ),
    (
        "--conformance-api-key",
        "--api-key",
        {
            "default": None,
            "metavar": "KEY",
            "help": "bearer key to send; also enables the 401 auth checks "
            "(default: none; self-started: a random key)",
        },
    ),
    (
        "--conformance-timeout",
        None,
        {
            "default": 60.0,
            "type": float,
            "metavar": "S",
            "help": "timeout in seconds of every request (default: 60); each test is also limited to "
            "max(120, 5*S) seconds through pytest-timeout",
        },
    ),
    (
        "--conformance-probe-timeout",
        None,
        {
            "default": 5.0,
            "type": float,
            "metavar": "S",
            "help": "before each check, GET /models must be answered within S seconds (and after a "
            "failed check a 1-token chat within 3*S), else the check is an error 'server stopped "
            "answering' (default: 5)",
        },
    ),
    (
        "--conformance-recovery-wait",
        None,
        {
            "default": 120.0,
            "type": float,
            "metavar": "S",
            "help": "keep probing a server that stopped answering for S seconds, resuming the checks when "
            "it answers again; after that the remaining checks are errors without a probe (default: 120)",
        },
    ),
    (
        "--conformance-label",
        None,
        {
            "default": None,
            "metavar": "TEXT",
            "help": "name and version of the server under test, for the report and the matrix "
            "(default: the base URL; self-started: chatref and its version)",
        },
    ),
    (
        "--conformance-openapi-spec",
        "--openapi-spec",
        {
            "default": None,
            "metavar": "PATH",
            "help": "OpenAI's official openapi.json; adds schemathesis runs against createChatCompletion "
            "(default: none)",
        },
    ),
    (
        "--conformance-report",
        None,
        {
            "default": None,
            "metavar": "PATH",
            "help": "write the per-feature report to PATH (.md) and its .json sibling, the input of "
            "python -m conformance.matrix (default: none)",
        },
    ),
    (
        "--conformance-max-examples",
        None,
        {
            "default": 25,
            "type": int,
            "metavar": "N",
            "help": "schemathesis examples per operation and mode (default: 25)",
        },
    ),
    (
        "--conformance-fuzz-examples",
        None,
        {
            "default": 0,
            "type": int,
            "metavar": "N",
            "help": "fuzzing: N schemathesis examples per mode on createChatCompletion, every case sent "
            "and counted even after failures (default: 0, off: --conformance-max-examples, stop at 3)",
        },
    ),
    (
        "--conformance-startup-timeout",
        None,
        {
            "default": 600.0,
            "type": float,
            "metavar": "S",
            "help": "seconds to wait for the self-started reference server's /health (default: 600)",
        },
    ),
]


@pytest.hookimpl(trylast=True)
def pytest_addoption(parser: pytest.Parser) -> None:
    """Each option under its long name, and its short alias unless another plugin has it.

    pytest has no public way to list the options other plugins registered; since pytest 9 the
    parser adds each option to argparse at once, so a taken alias raises argparse's conflict
    error right here and the option is added without it. ``conformance/tests/test_plugin.py``
    pins that behaviour (a plugin owning ``--base-url`` loaded first).
    """
    group = parser.getgroup("conformance", "OpenAI-compatible server conformance (chatref)")
    for long, alias, kwargs in OPTIONS:
        dest = long[2:].replace("-", "_")
        if alias:
            try:
                group.addoption(long, alias, dest=dest, **kwargs)
                continue
            except argparse.ArgumentError:  # the alias belongs to another plugin
                pass
        group.addoption(long, dest=dest, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance(feature): a conformance check of the named feature")
    config.addinivalue_line(
        "markers",
        "conformance_disruptive: a check whose request may wedge a server: it runs after the others",
    )
    config.stash[REPORT_KEY] = Report()
    config.stash[FIGURES_KEY] = Figures()
    config.stash[WATCH_KEY] = Watch(
        float(config.getoption("conformance_probe_timeout", 5.0)),
        float(config.getoption("conformance_recovery_wait", 120.0)),
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``pytest conformance`` runs the suite, not its self-tests (run those as conformance/tests)."""
    tests_dir = PACKAGE_DIR / "tests"
    if collection_path.resolve() != tests_dir:
        return None
    for arg in config.args:
        target = Path(str(arg).split("::")[0]).resolve()
        if target == tests_dir or tests_dir in target.parents:
            return None
    return True


def _feature(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("conformance")
    return str(mark.args[0]) if mark and mark.args else None


@pytest.hookimpl(trylast=True)  # after any reordering plugin (pytest-randomly)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A request that may wedge a server (a prompt far over any context) goes last, so that a
    # server it wedges has answered every other check first.
    items.sort(key=lambda item: item.get_closest_marker("conformance_disruptive") is not None)
    if not config.pluginmanager.hasplugin("timeout"):
        return
    limit = max(120.0, 5 * float(config.getoption("conformance_timeout")))
    limit = max(limit, FUZZ_SECONDS_PER_CASE * int(config.getoption("conformance_fuzz_examples")))
    for item in items:
        if _feature(item) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Probe the server before a check (before its fixtures, which may send requests too)."""
    if _feature(item) is not None:
        item.config.stash[WATCH_KEY].before(item.nodeid)


def _skip_reason(rep: pytest.TestReport) -> str:
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    return reason.removeprefix("Skipped: ")


def _skip_outcome(reason: str) -> str:
    return next((name for name in SKIP_OUTCOMES if reason.startswith(name)), "skipped")


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """Unsupported and info checks get their own word and letter instead of "SKIPPED"/"s"."""
    if not (report.skipped and "conformance" in report.keywords and report.when in ("setup", "call")):
        return None
    outcome = _skip_outcome(_skip_reason(report))
    return (outcome, *SKIP_OUTCOMES[outcome]) if outcome in SKIP_OUTCOMES else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    rep = yield
    feature = _feature(item)
    if feature is None:
        return rep
    report, watch = item.config.stash[REPORT_KEY], item.config.stash[WATCH_KEY]
    down = rep.failed and call.excinfo is not None and call.excinfo.errisinstance(ServerDown)
    if rep.when == "call" or (rep.when == "setup" and rep.failed and not down):
        watch.after(item.nodeid, rep.failed)
    if rep.skipped:
        reason = _skip_reason(rep)
        if rep.when in ("call", "setup"):
            report.record(item.nodeid, feature, _skip_outcome(reason), reason)
    elif rep.failed:
        reason = call.excinfo.exconly().splitlines()[0] if call.excinfo else str(rep.longrepr)[:300]
        for prefix in ("conformance.watch.ServerDown: ", "conformance.checks.ConformanceError: ",
                       "AssertionError: ", "Failed: "):  # fmt: skip
            reason = reason.removeprefix(prefix)
        # A server defect found while setting up a check is a failure; anything else that kept
        # the check from running (the server stopped answering) is an error.
        defect = rep.when == "call" or (
            call.excinfo is not None and call.excinfo.errisinstance(ConformanceError)
        )
        report.record(
            item.nodeid,
            feature,
            "fail" if defect else "error",
            f"[{rep.when}] {reason}" if rep.when != "call" and not down else reason,
        )
    elif rep.when == "call":
        report.record(item.nodeid, feature, "pass")
    return rep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    report = config.stash.get(REPORT_KEY, None)
    if report is None or not report.outcomes:
        return
    terminalreporter.section("conformance")
    for line in report.table_lines(config.get_terminal_writer().fullwidth):
        terminalreporter.write_line(line)
    figures = config.stash.get(FIGURES_KEY, None)
    if figures is not None and figures.runs:
        report.figures = figures
        terminalreporter.section("schemathesis figures")
        for line in figures.table_lines():
            terminalreporter.write_line(line)
    path = config.getoption("conformance_report")
    if path:
        md, js = report.write(Path(path))
        terminalreporter.write_line(f"conformance report: {md} and {js}")


def _first_model(base_url: str, api_key: str | None, timeout: float) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=timeout)
    r.raise_for_status()
    data = r.json().get("data") or []
    if not data:
        raise RuntimeError(f"GET {base_url}/models lists no model; pass --model")
    return str(data[0]["id"])


@pytest.fixture(scope="session")
def conformance_figures(request: pytest.FixtureRequest) -> Figures:
    """Where the schemathesis runs tally their cases (printed and reported at the end)."""
    return request.config.stash[FIGURES_KEY]


@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The server under test: ``--base-url`` or a self-started reference server."""
    opt = request.config.getoption
    timeout = float(opt("conformance_timeout"))
    base_url = opt("conformance_base_url") or opt("base_url", None)
    report, watch = request.config.stash[REPORT_KEY], request.config.stash[WATCH_KEY]
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if base_url:
        key = opt("conformance_api_key")
        model = opt("conformance_model") or _first_model(base_url, key, timeout)
        target = Target(
            base_url.rstrip("/"),
            model,
            key,
            timeout,
            opt("conformance_language_model") or "",
            opt("conformance_reasoning_model") or "",
        )
        label = opt("conformance_label") or target.base_url
        report.target = {"label": label, "base_url": target.base_url, "model": model, "self_started": False,
                         "date": date}  # fmt: skip
        watch.target = target
        yield target
        watch.close()
        return
    try:
        server = start_reference(DEFAULT_MODELS, float(opt("conformance_startup_timeout")))
    except Exception as e:  # the reference server may be absent or broken; fail, never hang
        pytest.fail(f"cannot self-start the reference server: {e}", pytrace=False)
    try:
        model = opt("conformance_model") or DEFAULT_MODELS[0]
        language = opt("conformance_language_model") or DEFAULT_MODELS[1]
        reasoning = opt("conformance_reasoning_model") or REASONING_MODEL
        target = Target(server.base_url, model, server.api_key, timeout, language, reasoning)
        label = opt("conformance_label") or f"chatref {importlib.metadata.version('chatref')}"
        report.target = {"label": label, "base_url": target.base_url, "model": model, "self_started": True,
                         "date": date}  # fmt: skip
        watch.target = target
        yield target
    finally:
        watch.close()
        server.stop()
