#!/usr/bin/env bash
# test_cli.sh CLI MODEL_DIR: the `specreason` command end to end on generated models: help, usage
# errors (exit 2), model and context errors (exit 1, clear message), streaming (plain when piped,
# coloured on request), --json (parsed), stdin input, single-model modes.
set -u
cli=$1; dir=$2
small=$dir/small-b.gguf; base=$dir/base-b.gguf
pass=0; fail=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# expect CODE PATTERN -- command...: exit status and a pattern in stdout+stderr
expect() {
    local code=$1 pat=$2; shift 3
    local out rc
    out=$("$@" 2>&1 </dev/null); rc=$?
    if [ "$rc" != "$code" ]; then bad "exit $rc (wanted $code): $*"; echo "$out" | tail -3 >&2; return; fi
    if [ -n "$pat" ] && ! printf '%s' "$out" | grep -qE -- "$pat"; then bad "no /$pat/ in output of: $*"; echo "$out" | tail -3 >&2; return; fi
    ok
}
common=(--threads 1 --small "$small" --base "$base" --ctx 2048 --budget 64 --max-step-tokens 16 --max-answer-tokens 8 --greedy)

expect 0 "--spec-decode" -- "$cli" --help
expect 0 "specreason [0-9]" -- "$cli" --version
expect 2 "unknown option '--bogus'" -- "$cli" --bogus
expect 2 "threshold expects a number in \[0, 10\]" -- "$cli" "${common[@]}" --threshold 11 -p x
expect 2 "budget expects an integer" -- "$cli" "${common[@]}" --budget 12abc -p x
expect 2 "unknown mode 'fast'" -- "$cli" "${common[@]}" --mode fast -p x
expect 2 "needs --base" -- "$cli" --small "$small" -p x
expect 2 "no problem given" -- "$cli" "${common[@]}"
expect 1 "No such file" -- "$cli" --small /nonexistent.gguf --base "$base" -p x
printf 'garbage' > "$dir/cli-garbage.gguf"
expect 1 "not a GGUF" -- "$cli" --small "$dir/cli-garbage.gguf" --base "$base" -p x
expect 1 "do not fit in its context" -- "$cli" --small "$small" --base "$base" --ctx 512 --budget 8192 -p x

# Streaming, piped: plain text, each step marked by author.
out=$("$cli" "${common[@]}" -p "What is 2+3?" 2>&1); rc=$?
[ $rc = 0 ] && ok || bad "stream run exit $rc"
printf '%s' "$out" | grep -q "\[step 0 · " && ok || bad "no step marker in stream"
printf '%s' "$out" | grep -q $'\x1b\[' && bad "ANSI escapes in piped output" || ok
printf '%s' "$out" | grep -q "^acceptance" && ok || bad "no summary"
out=$("$cli" "${common[@]}" --color always -p "What is 2+3?" 2>&1)
printf '%s' "$out" | grep -q $'\x1b\[' && ok || bad "--color always printed no colour"

# --json: one parseable object with steps and statistics; stdin as the problem.
js=$(echo "What is 7*6?" | "$cli" "${common[@]}" --json 2>/dev/null); rc=$?
[ $rc = 0 ] && ok || bad "json run exit $rc"
if python3 - "$js" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["mode"] == "spec" and isinstance(r["text"], str)
assert r["stop"] in ("answer", "repeat", "budget", "eog", "answer-max", "context")
assert len(r["steps"]) == r["stats"]["steps"] > 0
for s in r["steps"]:
    assert s["author"] in ("small", "base-reject", "base-forced")
    assert (s["score"] is None) == (s["author"] != "small")
st = r["stats"]
assert st["steps_small"] + st["steps_base_reject"] + st["steps_base_forced"] == st["steps"]
assert st["judged"] == st["steps_small"] + st["steps_base_reject"]
assert sum(st["score_hist"]) == st["judged"]
assert st["adopted_tokens"] == sum(s["tokens"] for s in r["steps"])
PY
then ok; else bad "json content"; fi

# The user message: --prompt-template needs {problem}; the GPQA template needs its four choices,
# which then reach the prompt; a problem with a NUL byte is refused, not cut.
expect 2 "has no \{problem\}" -- "$cli" "${common[@]}" --prompt-template "Solve this." -p x
expect 2 "choice-a" -- "$cli" "${common[@]}" --template gpqa -p "Which?"
expect 2 "need a template that shows them" -- "$cli" "${common[@]}" --choice-a 1 --choice-b 2 --choice-c 3 --choice-d 4 -p "Which?"
gp() { "$cli" "${common[@]}" --mode base --budget 1 --max-step-tokens 1 --json --template gpqa "$@" 2>/dev/null |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["prompt_tokens_base"])'; }
short=$(gp --choice-a 1 --choice-b 2 --choice-c 3 --choice-d 4 -p "Which?")
long=$(gp --choice-a "one thousand and one" --choice-b "two thousand and two" --choice-c "three thousand" --choice-d "four thousand" -p "Which?")
[ -n "$short" ] && [ -n "$long" ] && [ "$long" -gt "$short" ] && ok || bad "GPQA choices did not reach the prompt ($short vs $long tokens)"
printf 'What is\0 2+2?' > "$dir/cli-nul.txt"
expect 2 "NUL byte" -- "$cli" "${common[@]}" -f "$dir/cli-nul.txt"
expect 0 "digit-softmax" -- "$cli" "${common[@]}" --score digit-softmax --quiet -p "What is 2+3?"
expect 2 "unknown score method 'mean'" -- "$cli" "${common[@]}" --score mean -p x
expect 2 "unknown gate label 'bogus'" -- "$cli" "${common[@]}" --gate-label bogus -p x

# Single-model modes need only their model; spec decoding needs both.
expect 0 "^steps" -- "$cli" --base "$base" --mode base --ctx 2048 --budget 32 --greedy -p "hi"
expect 0 "^steps" -- "$cli" --small "$small" --mode small --ctx 2048 --budget 32 --greedy -p "hi"
expect 0 "^steps" -- "$cli" --base "$base" --policy never --ctx 2048 --budget 32 --greedy -p "hi"
expect 0 "^drafting" -- "$cli" "${common[@]}" --mode base --spec-decode -p "hi"

echo "test_cli: $pass passed, $fail failed"
[ $fail = 0 ]
