#!/usr/bin/env bash
# Create (once) and update the project's virtualenv at .venv, CPU torch first.
# Sourced by scripts/serve and scripts/test; safe to run again (it only installs what changed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "chatref: creating $root/.venv with $("$py" --version)"
  "$py" -m venv "$root/.venv"
fi
pip=("$root/.venv/bin/python" -m pip --disable-pip-version-check -q)
stamp="$root/.venv/.chatref-installed"
want="$(cat "$root/pyproject.toml" "$root/ci/constraints.txt" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # The CPU build first: an unpinned torch would pull a multi-GB CUDA build.
  "${pip[@]}" install "torch==2.13.0"
  "${pip[@]}" install -c "$root/ci/constraints.txt" -e "$root[test,lint,docs]"
  echo "$want" > "$stamp"
fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export PATH="$root/.venv/bin:$PATH"
