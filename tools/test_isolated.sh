#!/usr/bin/env bash
# À la carte, proven: run each distribution's own tests in a fresh virtual environment that holds
# only aperion-bus, that distribution, its declared dependencies and its `test` dependency group.
# A missing dependency or a hidden import of another plugin fails here.
# Usage: tools/test_isolated.sh [DIST_DIR ...]   (default: core plugins/* contrib/*)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
envs=${APERION_ISOLATED_ENVS:-"$root/.venvs"}
mkdir -p "$envs"
if [ "$#" -gt 0 ]; then dists=("$@"); else dists=(core plugins/*/ contrib/*/); fi
fail=0
for d in "${dists[@]}"; do
  d=${d%/}
  [ -f "$d/pyproject.toml" ] || continue
  [ -d "$d/tests" ] || { echo "!! $d has no tests/ directory"; fail=1; continue; }
  name=$(basename "$d")
  env="$envs/$name"
  echo "=== $d (isolated env $env)"
  rm -rf "$env"
  uv venv -q --python python3 "$env"
  install=(-e core)
  [ "$d" = core ] || install+=(-e "$d")
  # a distribution may depend on other workspace members (e.g. aperion-event-bus on every plugin)
  for dep in $(python3 tools/workspace_deps.py "$d"); do install+=(-e "$dep"); done
  uv pip install -q -p "$env/bin/python" "${install[@]}" --group "$d/pyproject.toml:test"
  if ! (cd "$d" && "$env/bin/python" -m pytest -q -p no:cacheprovider --import-mode=importlib tests); then
    echo "!! isolated tests failed: $d"; fail=1
  fi
done
exit $fail
