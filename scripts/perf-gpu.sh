#!/usr/bin/env bash
# chatref perf on a CUDA machine from model shapes alone, for a GPU box the weights cannot reach.
#
#   OUT=out/perf-gpu bash scripts/perf-gpu.sh MODEL_DIR...
#
# Each MODEL_DIR needs only config.json and the tokenizer files. Each gets seeded random weights
# of its shape (perf/shaped.py), so bytes per token and the kernels run are the real model's
# while speculative acceptance is not. Then, per model, two bounded `chatref perf --device cuda`
# runs, eager modes and compiled ones (each beside plain fp32, so both carry the speedup column):
# a compile that fails or overruns costs its own run, never the eager figures. First, the int8
# products this torch offers on the GPU are checked against float and timed (int8-products.txt).
# Environment: OUT, PYTHON (python3), TOKENS (128), RUNS (5), EAGER_S (240: eager decode on a GPU
# is host-bound, 20-35 ms a token on an H200's host), COMPILED_S (300), EAGER_MODES and
# COMPILED_MODES (the lists below).
set -uo pipefail
out=${OUT:-out/perf-gpu}
py=${PYTHON:-python3}
tokens=${TOKENS:-128}
runs=${RUNS:-5}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/chatref-inductor}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv \
  | tee "$out/gpu.txt"
"$py" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
  | tee -a "$out/gpu.txt"

# The int8 products for one decode row over a bandwidth-preset-sized weight (2048 -> 5632, 23 MB
# in int8, so it comes from HBM, not L2, across 24 copies): error against fp32, and time.
"$py" - <<'EOF' 2>&1 | tee "$out/int8-products.txt"
import torch, torch.nn.functional as F
dev = torch.device("cuda")
torch.manual_seed(0)
copies = [torch.randn(5632, 2048, device=dev) for _ in range(24)]
scales = [(w.abs().amax(1) / 127).clamp(min=1e-8) for w in copies]
q = [torch.round(w / s[:, None]).clamp(-127, 127).to(torch.int8) for w, s in zip(copies, scales)]
sb = [s.to(torch.bfloat16) for s in scales]
wb = [w.to(torch.bfloat16) for w in copies]
x = torch.randn(1, 2048, device=dev)
xb = x.to(torch.bfloat16)
products = {
    "fp32 F.linear": (lambda i: F.linear(x, copies[i]), 4),
    "bf16 F.linear": (lambda i: F.linear(xb, wb[i]), 2),
    "int8 widen+bf16 (dequantize)": (lambda i: F.linear(xb, q[i].to(torch.bfloat16)) * sb[i], 1),
}
try:
    torch._weight_int8pack_mm(xb, q[0], sb[0])
    products["int8 _weight_int8pack_mm"] = (lambda i: torch._weight_int8pack_mm(xb, q[i], sb[i]), 1)
except Exception as exc:
    print("_weight_int8pack_mm on CUDA:", type(exc).__name__, str(exc).splitlines()[0][:200])
ref = F.linear(x.double(), copies[0].double())
for name, (fn, width) in products.items():
    err = ((fn(0).double() - ref).norm() / ref.norm()).item()
    for _ in range(3):
        [fn(i) for i in range(24)]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(10):
        start.record(); [fn(i) for i in range(24)]; end.record(); torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 24 * 1e3)
    gbs = 5632 * 2048 * width / (best * 1e-6) / 1e9
    print(f"{name:30s} {best:7.1f} us/product  weight bytes {gbs:6.0f} GB/s  rel.err {err:.1e}")
EOF

read -ra eager <<<"${EAGER_MODES:-fp32 bf16 int8 prompt-lookup draft-int8}"
read -ra compiled <<<"${COMPILED_MODES:-fp32 fp32-compiled bf16-compiled int8-compiled}"
for src in "$@"; do
  name=$(basename "$src")
  model=/tmp/chatref-shaped/$name
  echo "== $name: random weights of its shape"
  "$py" -m perf.shaped "$src" "$model" --device cuda || continue
  for kind in eager compiled; do
    declare -n modes=$kind
    limit=$([ "$kind" = eager ] && echo "${EAGER_S:-240}" || echo "${COMPILED_S:-300}")
    echo "== $name $kind: ${modes[*]} (at most ${limit} s)"
    # perf_hints: inductor says why a graph could not become a CUDA graph, if it could not
    hints=(); [ "$kind" = compiled ] && hints=(env TORCH_LOGS=perf_hints)
    "${hints[@]}" timeout "$limit" "$py" -m perf.cli --model "$model" --device cuda --modes "${modes[@]}" \
      --new-tokens "$tokens" --runs "$runs" --out "$out/$name-$kind" 2>&1 | tee "$out/$name-$kind.log"
    echo "== $name $kind: exit ${PIPESTATUS[0]}"
  done
done
