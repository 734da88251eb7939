"""``chatref perf`` end to end on the tiny model: table, JSON, Markdown, PNG, baseline and gate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perf.cli import main
from reference.kernels import q8
from reference.presets import TINY_MODEL


def test_cli_writes_every_report_and_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, baseline = tmp_path / "out", tmp_path / "baseline.json"
    argv = ["--model", "tiny", "--modes", "fp32", "int8", "prompt-lookup", "--new-tokens", "10"]
    argv += ["--runs", "1", "--warmup", "0", "--device", "cpu", "--out", str(out), "--quiet"]
    assert main([*argv, "--write-baseline", str(baseline)]) == 0
    doc = json.loads((out / "perf.json").read_text())
    assert [m["mode"] for m in doc["modes"]] == ["fp32", "int8", "prompt-lookup"]
    assert doc["bandwidth"]["gbps"] > 0 and doc["machine"]["versions"]["torch"]
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"  # conftest sets it unless set
    assert doc["machine"]["serial_tokens"] == (8 if passive else 0)
    assert doc["machine"]["int8_kernel"] == q8.describe()  # what the int8 row multiplied with
    for m in doc["modes"]:
        assert m["error"] is None and m["tokens_per_s"] > 0 and m["bytes_per_token"] > 0
        assert m["mbu"] == pytest.approx(
            m["tokens_per_s"] * m["bytes_per_token"] / 1e9 / doc["bandwidth"]["gbps"]
        )
    assert (out / "roofline.png").read_bytes()[:4] == b"\x89PNG"
    assert "| prompt-lookup |" in (out / "perf.md").read_text()
    assert f"decode on {TINY_MODEL}" in capsys.readouterr().out
    assert ("forwards of up to 8 tokens on one thread" in (out / "perf.md").read_text()) is passive
    assert set(json.loads(baseline.read_text())["ratios"]) >= {"speedup:int8", "acceptance:prompt-lookup"}


def test_cli_rejects_unknown_modes() -> None:
    with pytest.raises(SystemExit, match="unknown mode"):
        main(["--model", "tiny", "--modes", "fp64"])
