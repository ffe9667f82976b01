#!/usr/bin/env bash
# Installs what builds and tests need on a fresh machine of this project's kind. Idempotent and quiet when
# everything is present. The .NET SDK itself comes with the machine image; NuGet packages restore on build.
set -euo pipefail

if ! command -v dotnet >/dev/null 2>&1; then
  echo "error: the .NET SDK (dotnet) is not on PATH; stcache needs .NET 10 (see global.json)" >&2
  exit 1
fi

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v pkill >/dev/null 2>&1 || missing+=(procps)
# The operations tests scrape a cluster with a real Prometheus and drive the dashboard in a headless Chromium.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The RESP tests drive real Redis clients: redis-cli and redis-benchmark (redis-tools), redis-py (python3-redis).
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
/usr/bin/python3 -c 'import redis' >/dev/null 2>&1 || missing+=(python3-redis)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi
