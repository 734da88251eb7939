"""The pytest plugin on its own, under pytester: options and aliases, the report, inertness.

These pin what the plugin relies on in pytest: that a taken alias is refused while options are
being added (not later, at parse time), that ``Config.get_terminal_writer`` gives the width,
and the hooks it implements. A pytest upgrade that changes any of it fails here first, loudly,
instead of breaking a user's run. No server: the conformance tests here are plain functions.
"""

from __future__ import annotations

import json
import re

import pytest

from conformance.plugin import OPTIONS

__all__: list[str] = []

OTHER_PLUGIN = """
def pytest_addoption(parser):
    parser.getgroup("base url").addoption("--base-url", dest="other_base_url", help="THE OTHER ONE")
"""

MARKED_TESTS = """
import pytest

pytestmark = pytest.mark.conformance("demo")

def test_ok():
    pass

def test_broken():
    raise AssertionError("x" * 300)

def test_refused():
    pytest.skip("unsupported: the server refuses this")
"""


def test_every_option_and_its_alias_is_offered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    assert result.ret == 0
    text = result.stdout.str()
    assert "OpenAI-compatible server conformance (chatref)" in text
    for long, alias, _ in OPTIONS:
        assert re.search(rf"{long}=\S+, {alias}=" if alias else rf"{long}=", text), long


def test_an_alias_another_plugin_owns_is_left_to_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(other_plugin=OTHER_PLUGIN)
    pytester.syspathinsert()
    help_text = pytester.runpytest_inprocess("-p", "other_plugin", "--help").stdout.str()
    assert "THE OTHER ONE" in help_text and "--conformance-base-url" in help_text
    assert not re.search(r"--conformance-base-url=URL, --base-url", help_text)
    assert re.search(r"--conformance-model=NAME, --model=NAME", help_text)  # nobody else's alias stays
    pytester.makepyfile(
        test_values="""
        def test_values(pytestconfig):
            assert pytestconfig.getoption("other_base_url") == "http://other"
            assert pytestconfig.getoption("conformance_base_url") == "http://mine/v1"
        """
    )
    args = ("-p", "other_plugin", "--base-url", "http://other", "--conformance-base-url", "http://mine/v1")
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=1)


def test_marked_tests_make_the_table_and_the_report_files(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_demo=MARKED_TESTS)
    widths = {}
    for columns in (80, 200):
        monkeypatch.setenv("COLUMNS", str(columns))
        result = pytester.runpytest_inprocess("--conformance-report", "out/report.md")
        # an unsupported check is a skip that pytest's last line counts under its own word
        counts = result.parseoutcomes()
        assert (counts.get("passed"), counts.get("failed"), counts.get("unsupported")) == (1, 1, 1), counts
        lines = result.outlines
        start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ conformance =+", line))
        demo = next(line for line in lines[start:] if line.startswith("demo "))
        assert " 3 " in demo and "xxx" in demo
        widths[columns] = len(demo)
    assert widths[80] < widths[200] <= 200  # the failure column follows the terminal's width
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    assert report["totals"] == {**report["totals"], "checks": 3, "pass": 1, "fail": 1, "unsupported": 1}
    assert "| demo |" in (pytester.path / "out" / "report.md").read_text()


def test_the_plugin_is_inert_without_conformance_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1)
    assert not [line for line in result.outlines if re.fullmatch(r"=+ conformance =+", line)]
