#!/usr/bin/env bash
# Runs every test suite: unit, storage crash-consistency, deterministic simulation, process-level integration.
# Usage: ./test.sh [extra dotnet test arguments]
# Environment: SIM_SEEDS (default set by the simulation suite), SIM_SEED (replay one seed).
set -euo pipefail
cd "$(dirname "$0")"

./scripts/ensure-deps.sh

# Formatting, by .editorconfig: whitespace over the source tree, read as files (no build, seconds). Code style and
# naming are checked by the build itself (EnforceCodeStyleInBuild). `dotnet format` fixes both.
if ! dotnet format whitespace --folder --verify-no-changes --exclude '**/bin/**' --exclude '**/obj/**'; then
    echo "formatting differs from .editorconfig: run 'dotnet format whitespace --folder' (or 'dotnet format Stcache.slnx')" >&2
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

status=0
dotnet test Stcache.slnx -c Release --nologo "$@" 2>&1 | tee "$log" || status=$?

# One closing line over all test assemblies, so any runner can read the result.
awk '
  /(Passed|Failed)! +- +Failed: +[0-9]+, +Passed: +[0-9]+, +Skipped: +[0-9]+/ {
    gsub(",", ""); for (i = 1; i <= NF; i++) {
      if ($i == "Failed:") f += $(i + 1); if ($i == "Passed:") p += $(i + 1); if ($i == "Skipped:") s += $(i + 1)
    }
  }
  END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
