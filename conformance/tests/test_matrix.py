"""The matrix from several JSON reports, as written by the report itself."""

from __future__ import annotations

from pathlib import Path

from conformance.matrix import main
from conformance.report import Report

__all__: list[str] = []


def _report(path: Path, label: str, outcomes: dict[str, tuple[str, str]]) -> Path:
    report = Report(
        target={"label": label, "base_url": "http://127.0.0.1:1/v1", "model": "m", "date": "today"}
    )
    for name, (outcome, reason) in outcomes.items():
        report.record(f"conformance/test_x.py::{name}", name.split("_")[1], outcome, reason)
    _, js = report.write(path)
    return js


def test_one_column_per_server_one_row_per_check(tmp_path: Path) -> None:
    a = _report(
        tmp_path / "a.md", "server A 1.0", {"test_chat_ok": ("pass", ""), "test_stop_x": ("info", "why")}
    )
    b = _report(tmp_path / "b.md", "server B 2.0", {"test_chat_ok": ("fail", "broke | badly"),
                                                     "test_tools_y": ("unsupported", "400")})  # fmt: skip
    out = tmp_path / "matrix.md"
    assert main([str(a), str(b), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| | server A 1.0 | server B 2.0 |" in text
    assert "| date | today | today |" in text
    assert "| chat | `test_x.py::test_chat_ok` | pass | **fail** |" in text
    assert "| stop | `test_x.py::test_stop_x` | info |  |" in text  # B lacks the check: blank
    assert "| tools | `test_x.py::test_tools_y` |  | unsupported |" in text
    assert "- fail: `test_x.py::test_chat_ok`: broke \\| badly" in text
    assert "## server A 1.0: 1 checks not passing" in text


def test_refuses_other_files(tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text('{"a": 1}')
    assert main([str(bogus)]) == 2
