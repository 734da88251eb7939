"""``python -m perf.llamacpp_ab`` where llama-cpp-python is absent (as in CI): one line, exit 0."""

from __future__ import annotations

import sys

import pytest

from perf.llamacpp_ab import main


def test_skips_cleanly_without_llama_cpp(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    assert main(["--threads", "1", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("skipped: llama_cpp is not importable") and out.count("\n") == 1
