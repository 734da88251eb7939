"""A model's shape with seeded random weights: for timing where the real weights cannot go.

Owns one step: from a model directory that needs only its ``config.json`` and tokenizer files
(no weights), write a directory of the same architecture and sizes whose weights are seeded
random, in the config's dtype. Decoding such a copy reads the same bytes per token as the real
model and runs the same kernels, so plain and quantized tokens/s and MBU carry over; what does
not is anything that depends on what the weights say (speculative acceptance, answers). The
copy is for ``chatref perf`` only. Knows nothing of timing, presets or the server.

    python -m perf.shaped SOURCE_DIR TARGET_DIR [--seed N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

__all__ = ["COPIED", "main", "random_copy"]

# Everything but the weights: config, generation defaults, tokenizer and chat template
COPIED = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def random_copy(source: Path, target: Path, *, seed: int = 0, device: str = "cpu") -> Path:
    """Write ``target``: ``source``'s config and tokenizer, seeded random weights; returns it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    dtype = getattr(config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    torch.manual_seed(seed)
    with torch.device(device):  # a GPU initializes a 0.6B model in a second, a CPU in ~20
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    for name in COPIED:
        if (source / name).is_file() and name != "config.json":  # save_pretrained wrote the config
            shutil.copyfile(source / name, target / name)
    (target / "random-weights.json").write_text(json.dumps({"source": str(source), "seed": seed}) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.shaped", description=__doc__.split("\n")[0])
    p.add_argument("source", type=Path, help="a model directory: config.json and tokenizer files")
    p.add_argument("target", type=Path, help="where the random-weight copy is written")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.add_argument("--device", default="cpu", help="where the weights are initialized (default cpu)")
    args = p.parse_args(argv)
    if not (args.source / "config.json").is_file():
        raise SystemExit(f"{args.source}: no config.json")
    print(random_copy(args.source, args.target, seed=args.seed, device=args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
