#!/usr/bin/env bash
# no_shared_paths.sh ROOT: fails when a tracked build, test or script file names ../shared, a
# folder that exists only on the developers' machines (a user's clone has nothing beside it).
# Markdown is exempt: docs may say where a file came from.
set -euo pipefail
root=${1:?usage: no_shared_paths.sh ROOT}
cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    files=$(git ls-files -- ':!*.md' ':!tests/no_shared_paths.sh')
else
    files=$(find . -type f ! -name '*.md' ! -path './build*' ! -path './.git/*' ! -name no_shared_paths.sh)
fi
hits=$(printf '%s\n' "$files" | xargs -r grep -l -- '\.\./shared' 2>/dev/null || true)
if [ -n "$hits" ]; then
    echo "these tracked files name ../shared (ship what they need in the repository instead):"
    printf '  %s\n' $hits
    exit 1
fi
echo "no tracked build, test or script file names ../shared"
