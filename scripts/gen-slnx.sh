#!/usr/bin/env bash
# Regenerates Stcache.slnx from every project in src/, tests/ and bench/ (used when branches merge).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo '<Solution>'
  for dir in src tests bench; do
    # bench/dotnext-kv stays out: only bench/compare.sh builds it (it pulls in DotNext for one benchmark row).
    projects=$(find "$dir" -name '*.csproj' -not -path '*/bin/*' -not -path '*/obj/*' -not -path 'bench/dotnext-kv/*' 2>/dev/null | sort)
    [ -n "$projects" ] || continue
    echo "  <Folder Name=\"/$dir/\">"
    for p in $projects; do echo "    <Project Path=\"$p\" />"; done
    echo '  </Folder>'
  done
  echo '</Solution>'
} > Stcache.slnx
