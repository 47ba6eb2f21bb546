#!/usr/bin/env bash
# no_shared_paths.sh ROOT: fails when a tracked build, test or script file names the developers'
# "shared" folder beside the repository (dot-dot, slash, shared), which exists only on the
# developers' machines: a user's clone has nothing beside it. Markdown is exempt (docs may say
# where a file came from). The pattern is assembled below so that this file does not match it.
set -euo pipefail
root=${1:?usage: no_shared_paths.sh ROOT}
cd "$root"
pat='\.\./'
pat="${pat}shared"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    files=$(git ls-files -- ':!*.md')
else
    files=$(find . -type f ! -name '*.md' ! -path './build*' ! -path './.git/*')
fi
hits=$(printf '%s\n' "$files" | xargs -r grep -l -- "$pat" 2>/dev/null || true)
if [ -n "$hits" ]; then
    echo "these tracked files name the developers-only shared folder (ship what they need in the repository instead):"
    printf '  %s\n' $hits
    exit 1
fi
echo "no tracked build, test or script file names the developers-only shared folder"
