#!/usr/bin/env bash
# Publishes the node (out/stcached) and the CLI (out/stcachectl) as framework-dependent executables, ReadyToRun-compiled
# for this machine's runtime: a node that has never led then runs its leader code precompiled, not JIT-compiled in
# the middle of its first failover (docs/PERFORMANCE.md). The SDK picks the runtime pack and crossgen versions.
set -euo pipefail
cd "$(dirname "$0")"
configuration="${CONFIGURATION:-Release}"
r2r=(--use-current-runtime --self-contained false -p:PublishReadyToRun=true)
dotnet publish src/Stcache.Server/Stcache.Server.csproj -c "$configuration" -o out --nologo -v quiet "${r2r[@]}"
dotnet publish src/Stcache.Cli/Stcache.Cli.csproj -c "$configuration" -o out --nologo -v quiet "${r2r[@]}"
chmod +x out/stcached out/stcachectl
touch out/.built
echo "built: out/stcached out/stcachectl"
