#!/usr/bin/env bash
# train_pair.sh SR_TRAIN SPECREASON WORKDIR: `sr-train pair` end to end on a tiny budget -- the
# small model trained in a child process beside the base model, its mistakes piped back before
# the base model's judge phase, the cache directory (meta.json, held-out problems, a second call
# that reuses it, meta.json's sha256 of both files) -- then `sr-train pad` (a padded copy that the specreason CLI runs to the same
# greedy text as the original) and its bad arguments (clear errors, no file left behind).
set -u
train=$1 cli=$2 work=$3
rm -rf "$work" && mkdir -p "$work" || exit 1
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

tiny=(--small-steps 12 --base-steps 12 --judge-steps 4 --n-eval 4 --n-mistakes 60 --n-heldout 8 --threads 2)
out=$("$train" pair --dir "$work/pair" "${tiny[@]}" 2>"$work/pair.err") || { cat "$work/pair.err" >&2; fail "pair exited $?"; }
mapfile -t paths <<<"$out"
[ "${#paths[@]}" -eq 2 ] && [ "${paths[0]}" = "$work/pair/small.gguf" ] && [ "${paths[1]}" = "$work/pair/base.gguf" ] ||
    fail "pair printed '$out'"
for f in small.gguf base.gguf meta.json heldout.jsonl; do [ -s "$work/pair/$f" ] || fail "no $f"; done
grep -q '^\[small\] .* steps in .* (beside the base model)' "$work/pair.err" || fail "no report from the small model's process"
grep -Eq '^\[mistakes\] [0-9]+ wrong steps out of [0-9]+ ' "$work/pair.err" || fail "no mistakes from the small model's process"
python3 - "$work/pair" <<'PY' || fail "meta.json / heldout.jsonl"
import hashlib, json, sys
d = sys.argv[1]
m = json.load(open(d + "/meta.json"))
assert m["trainer_version"] and m["small"]["steps"] == 12 and m["base"]["steps"] == 16, m
assert m["mistakes_collected"] > 0, m
for role in ("small", "base"):  # the hashes name the files that are there
    assert m[role]["file"] == role + ".gguf", m[role]
    assert m[role]["sha256"] == hashlib.sha256(open(d + "/" + m[role]["file"], "rb").read()).hexdigest(), role
rows = [json.loads(l) for l in open(d + "/heldout.jsonl")]
assert len(rows) == 8 and all(r["steps"] and r["answer"] is not None for r in rows), rows[:1]
PY
"$train" pair --dir "$work/pair" "${tiny[@]}" >/dev/null 2>"$work/again.err" || fail "second pair call"
grep -q '^\[pair\] cached in' "$work/again.err" || fail "the second call retrained"

# pad: same greedy output from the padded base, bigger file
"$train" pad -m "$work/pair/base.gguf" -o "$work/base-ff2048.gguf" --ff 2048 || fail "pad exited $?"
[ "$(stat -c %s "$work/base-ff2048.gguf")" -gt "$(stat -c %s "$work/pair/base.gguf")" ] || fail "padded file not bigger"
problem=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["problem"])' "$work/pair/heldout.jsonl")
run() { "$cli" --small "$work/pair/small.gguf" --base "$1" -m base --template raw --greedy --threads 1 --ctx 512 \
            --budget 64 --max-step-tokens 16 --max-answer-tokens 8 --json -p "$problem" 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["text"])'; }
a=$(run "$work/pair/base.gguf") b=$(run "$work/base-ff2048.gguf")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "padded base wrote '$b', the original '$a'"
"$train" pad -m "$work/pair/base.gguf" -o "$work/shrunk.gguf" --ff 8 2>"$work/shrink.err"
[ $? -eq 2 ] && grep -q 'below the model' "$work/shrink.err" && [ ! -e "$work/shrunk.gguf" ] || fail "shrinking not refused"
"$train" pad -m "$work/missing.gguf" -o "$work/x.gguf" --ff 2048 2>"$work/missing.err"
[ $? -eq 1 ] && grep -q 'sr-train: ' "$work/missing.err" && [ ! -e "$work/x.gguf" ] || fail "missing input"
"$train" pad -m "$work/pair/base.gguf" -o "$work/x.gguf" --ff 12x 2>/dev/null
[ $? -eq 2 ] && [ ! -e "$work/x.gguf" ] || fail "bad --ff accepted"

[ $fails -eq 0 ] && echo "train_pair: all passed" || echo "train_pair: $fails failed"
[ $fails -eq 0 ]
