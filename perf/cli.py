"""``chatref perf``: measure bandwidth, decode every mode, print and write the report, gate.

Owns argument parsing and the order of a run (bandwidth first, then modes round-robin, then
reports and an optional gate), and hands ``perf load`` / ``perf load-report`` to
:mod:`perf.load.cli` and ``perf soak`` to :mod:`perf.soak.cli` (imported only then). Knows
nothing of HTTP; the server CLI dispatches here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from reference.presets import DEFAULT_MODEL

__all__ = ["build_parser", "main", "resolve_model", "run"]


def resolve_model(name: str) -> tuple[str, Path]:
    """A preset id or alias, a perf-only preset (materialized once, offline), or a model directory."""
    from perf.presets import get_perf_preset
    from reference.presets import get_preset, materialize

    preset = get_perf_preset(name) or get_preset(name)
    if preset is not None:
        return preset.id, materialize(preset)
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise SystemExit(f"chatref perf: {name!r} is neither a preset nor a model directory with config.json")
    return path.name, path


def build_parser() -> argparse.ArgumentParser:
    from perf.decode import DEFAULT_MODES

    p = argparse.ArgumentParser(
        prog="chatref perf",
        description="Decode tokens/s against the bandwidth roofline.",
        epilog="Server load benchmark: chatref perf load --help; chatref perf load-report --help. "
        "Soak (reliability under abuse): chatref perf soak --help",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help="preset id/alias or model directory")
    p.add_argument(
        "--modes", nargs="+", default=list(DEFAULT_MODES), help=f"any of: {' '.join(DEFAULT_MODES)}"
    )
    p.add_argument(
        "--out", type=Path, default=Path("out/perf"), help="writes perf.json, perf.md, roofline.png"
    )
    p.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per timed run")
    p.add_argument("--runs", type=int, default=3, help="timed runs per mode (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per mode first")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--gate", type=Path, metavar="BASELINE", help="compare ratios to this baseline; exit 1 on drop"
    )
    p.add_argument(
        "--write-baseline", type=Path, metavar="BASELINE", help="write this run's ratios as baseline"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure and write the reports; returns the result document."""
    from perf import report
    from perf.bandwidth import measure_bandwidth
    from perf.decode import MODES, run_modes
    from reference.loading import resolve_device

    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        raise SystemExit(
            f"chatref perf: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}"
        )
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # recorded; only effective before torch starts
    say = (lambda _: None) if args.quiet else (lambda msg: print(f"[perf] {msg}", file=sys.stderr))
    model_id, path = resolve_model(args.model)
    device = resolve_device(args.device)
    say(f"measuring bandwidth on {device}")
    bandwidth = measure_bandwidth(device)
    say(f"bandwidth {bandwidth.gbps:.1f} GB/s")
    stats = run_modes(
        path,
        list(args.modes),
        bandwidth_gbps=bandwidth.gbps,
        new_tokens=args.new_tokens,
        runs=args.runs,
        warmup=args.warmup,
        device=str(device),
        log=say,
    )
    doc = report.result_document(model_id, bandwidth, stats)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(doc, args.out / "perf.json")
    report.write_roofline(doc, args.out / "roofline.png")
    report.write_markdown(doc, args.out / "perf.md", "roofline.png")
    report.render_table(doc)
    say(f"wrote {args.out}/perf.json, perf.md, roofline.png")
    return doc


def main(argv: list[str]) -> int:
    """Entry point for ``chatref perf ARGS``; returns the process exit code."""
    if argv[:1] == ["load"]:
        from perf.load.cli import main as load

        return load(argv[1:])
    if argv[:1] == ["load-report"]:
        from perf.load.cli import report_main

        return report_main(argv[1:])
    if argv[:1] == ["soak"]:
        from perf.soak.cli import main as soak

        return soak(argv[1:])
    from perf import gate

    args = build_parser().parse_args(argv)
    doc = run(args)
    if args.write_baseline:
        args.write_baseline.write_text(json.dumps(gate.make_baseline(doc), indent=2) + "\n")
        print(f"wrote baseline {args.write_baseline}")
    if args.gate:
        outcome = gate.check(doc, json.loads(args.gate.read_text()))
        print(outcome.message())
        return 0 if outcome.ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
