#!/usr/bin/env bash
# Publishes the node (out/stcached) and the CLI (out/stcachectl) as framework-dependent executables.
set -euo pipefail
cd "$(dirname "$0")"
configuration="${CONFIGURATION:-Release}"
dotnet publish src/Stcache.Server/Stcache.Server.csproj -c "$configuration" -o out --nologo -v quiet
dotnet publish src/Stcache.Cli/Stcache.Cli.csproj -c "$configuration" -o out --nologo -v quiet
chmod +x out/stcached out/stcachectl
touch out/.built
echo "built: out/stcached out/stcachectl"
