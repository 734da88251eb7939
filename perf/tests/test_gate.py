"""The gate passes a run like its baseline and fails a degraded one with a readable message."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

import perf.decode
from perf import gate
from perf.bandwidth import Bandwidth
from perf.decode import run_modes
from perf.report import result_document
from reference.quant import Int8Linear


def _doc() -> dict[str, Any]:
    def mode(
        name: str, tps: float, mbu_ref: float, speedup: float, acc: float | None = None
    ) -> dict[str, Any]:
        return {
            "mode": name,
            "tokens_per_s": tps,
            "mbu_ref": mbu_ref,
            "speedup_best": speedup,
            "acceptance": acc,
        }

    return {
        "model": "m",
        "machine": {"cpu": "x", "cpu_count": 2, "gpu": None},
        "modes": [
            mode("fp32", 20.0, 0.30, 1.0),
            mode("int8", 40.0, 0.15, 2.0),
            mode("prompt-lookup", 50.0, 0.8, 2.5, acc=0.9),
        ],
    }


def test_ratios_pick_mbu_speedups_and_acceptance() -> None:
    assert gate.ratios(_doc()) == {
        "mbu_ref:fp32": 0.30,
        "mbu_ref:int8": 0.15,
        "speedup:int8": 2.0,
        "speedup:prompt-lookup": 2.5,
        "acceptance:prompt-lookup": 0.9,
    }


def test_same_run_passes_and_small_noise_passes() -> None:
    baseline = gate.make_baseline(_doc())
    assert gate.check(_doc(), baseline).ok
    noisy = _doc()
    noisy["modes"][1]["speedup_best"] = 2.0 * 0.85  # -15%: inside the 20% tolerance
    result = gate.check(noisy, baseline)
    assert result.ok, result.message()


def test_doctored_regression_fails_readably() -> None:
    baseline = gate.make_baseline(_doc())
    bad = copy.deepcopy(_doc())
    bad["modes"][1]["speedup_best"] = 1.1  # int8 lost its edge over fp32
    bad["modes"][2] = {"mode": "prompt-lookup", "error": "RuntimeError: boom"}
    result = gate.check(bad, baseline)
    message = result.message()
    assert not result.ok and len(result.failures) == 3
    assert "FAIL (3 regression(s))" in message
    assert "speedup:int8: 1.100 vs baseline 2.000 (-45%, tolerance -20%) REGRESSION" in message
    assert "relative to plain fp32" in message
    assert "acceptance:prompt-lookup: missing (RuntimeError: boom)" in message
    assert "--refresh" in message


def test_per_ratio_tolerance_and_cli_refresh_keep_tolerances(tmp_path: Path) -> None:
    result_path, base_path = tmp_path / "perf.json", tmp_path / "baseline.json"
    result_path.write_text(json.dumps(_doc()))
    assert gate.main([str(result_path), str(base_path), "--refresh"]) == 0
    base = json.loads(base_path.read_text())
    base["tolerances"] = {"speedup:int8": 0.5}
    base_path.write_text(json.dumps(base))
    slower = _doc()
    slower["modes"][1]["speedup_best"] = 1.2  # -40%: allowed by the widened tolerance
    result_path.write_text(json.dumps(slower))
    assert gate.main([str(result_path), str(base_path)]) == 0
    assert gate.main([str(result_path), str(base_path), "--refresh"]) == 0
    assert json.loads(base_path.read_text())["tolerances"] == {"speedup:int8": 0.5}


def test_gate_fails_on_a_deliberately_slowed_decode(tiny_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real (tiny) run, then the same run with int8 decode steps slowed down: the gate catches it."""
    bandwidth = Bandwidth("cpu", 20.0, 20.0, 1, 1, 1, "PASSIVE")

    def measured() -> dict[str, Any]:
        stats = run_modes(
            tiny_path, ["fp32", "int8"], bandwidth_gbps=20.0, new_tokens=12, runs=2, device="cpu"
        )
        return result_document("tiny", bandwidth, stats)

    baseline = gate.make_baseline(measured())
    real_step = perf.decode.decode_one_token

    def slowed(model: Any, token_id: int, cache: Any) -> Any:
        if isinstance(model.lm_head, Int8Linear):
            time.sleep(0.05)  # ~10x a tiny-model step
        return real_step(model, token_id, cache)

    monkeypatch.setattr(perf.decode, "decode_one_token", slowed)
    result = gate.check(measured(), baseline)
    assert not result.ok
    assert "speedup:int8" in result.message() and "mbu_ref:int8" in result.message()
