#!/usr/bin/env bash
# train_determinism.sh SR_TRAIN WORKDIR: the same settings train the same bits, whatever the load
# and whichever side of `sr-train pair` finishes first. Budgets are optimizer steps; a time limit
# only aborts.
#   1. `pair` on a tiny budget twice: once with the base model's start delayed (the small model and
#      its mistakes are ready first) and then the data-parallel worker's (the leader waits for it
#      at the judge phase), once with the small model's start delayed (the base model's first phase
#      waits for it) beside a busy loop. Byte-identical GGUFs, identical meta.json except measured
#      times, the judge phase ran on two processes, and meta.json's sha256 of each file matches
#      the file.
#   2. `train --threads 2` twice (two ggml threads on one model), once beside a busy loop: identical.
#   3. --time-limit: a run that cannot finish in time stops with a clear error and writes nothing.
#   4. a data-parallel worker that fails: a clear error, nothing written.
set -u
train=$1 work=$2
rm -rf "$work" && mkdir -p "$work" || exit 1
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
busy_pid=
busy() { timeout 120 sh -c 'yes > /dev/null' & busy_pid=$!; }
unbusy() { [ -n "$busy_pid" ] && kill "$busy_pid" 2>/dev/null; wait "$busy_pid" 2>/dev/null; busy_pid=; }
trap unbusy EXIT

tiny=(--small-steps 12 --base-steps 10 --judge-steps 6 --n-eval 4 --n-mistakes 60 --n-heldout 8 --threads 2 --judge-dp 1)
SR_TRAIN_TEST_STALL=base:2,worker:2 "$train" pair --dir "$work/a" "${tiny[@]}" >/dev/null 2>"$work/a.err" ||
    { cat "$work/a.err" >&2; fail "pair (small first) exited $?"; }
busy
SR_TRAIN_TEST_STALL=small:3 "$train" pair --dir "$work/b" "${tiny[@]}" >/dev/null 2>"$work/b.err" ||
    { cat "$work/b.err" >&2; fail "pair (base first, busy machine) exited $?"; }
unbusy
for f in small.gguf base.gguf heldout.jsonl; do
    cmp -s "$work/a/$f" "$work/b/$f" || fail "$f differs between the two pair runs"
done
python3 - "$work/a" "$work/b" <<'PY' || fail "meta.json"
import hashlib, json, sys
timed = {"train_seconds", "seconds", "cpu_seconds", "mistakes_cpu_seconds", "train_cpu_estimate_seconds",
         "ms_per_decode", "ms_prefill_32"}  # measured, not trained
def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in timed}
    return x
a, b = (json.load(open(d + "/meta.json")) for d in sys.argv[1:3])
assert strip(a) == strip(b), (strip(a), strip(b))
assert a["small"]["steps"] == 12 and a["base"]["steps"] == 16 and a["base"]["judge_steps"] == 6, a
assert a["judge_processes"] == 2, a
for d, m in zip(sys.argv[1:3], (a, b)):
    for role in ("small", "base"):
        want = hashlib.sha256(open(d + "/" + m[role]["file"], "rb").read()).hexdigest()
        assert m[role]["sha256"] == want, (d, role, m[role]["sha256"], want)
PY

# Two threads on one model: ggml's work split must not change the bits.
one=(train --role base --base-steps 8 --judge-steps 4 --n-heldout 8 --threads 2)
"$train" "${one[@]}" -o "$work/t2a.gguf" 2>"$work/t2a.err" || { cat "$work/t2a.err" >&2; fail "train exited $?"; }
busy
"$train" "${one[@]}" -o "$work/t2b.gguf" 2>"$work/t2b.err" || { cat "$work/t2b.err" >&2; fail "train (busy) exited $?"; }
unbusy
cmp -s "$work/t2a.gguf" "$work/t2b.gguf" || fail "train --threads 2 gave different bits beside a busy loop"

# A time limit aborts, never shortens: clear error, no model, no meta.json.
"$train" pair --dir "$work/c" "${tiny[@]}" --base-steps 100000 --time-limit 3 >/dev/null 2>"$work/c.err"
rc=$?
[ $rc -eq 1 ] || fail "pair past its time limit exited $rc"
grep -q 'time limit reached at step [0-9]* of 100000' "$work/c.err" || { cat "$work/c.err" >&2; fail "no time-limit message"; }
[ ! -e "$work/c/meta.json" ] && [ ! -e "$work/c/base.gguf" ] || fail "a run past its time limit left a result"
"$train" train --role small --small-steps 100000 --time-limit 2 -o "$work/tl.gguf" 2>"$work/tl.err"
[ $? -eq 1 ] && grep -q 'time limit reached' "$work/tl.err" && [ ! -e "$work/tl.gguf" ] || fail "train past its time limit"

# The data-parallel judge phase when the worker fails (test hook: its step count disagrees): a
# clear error, no model, no meta.json, no process left behind.
SR_TRAIN_TEST_WORKER_FAIL=1 "$train" pair --dir "$work/d" "${tiny[@]}" >/dev/null 2>"$work/d.err"
rc=$?
[ $rc -eq 1 ] && grep -Eq 'worker process stopped or failed at (the start|step 0)' "$work/d.err" &&
    grep -q 'the leader trains another shape or step count' "$work/d.err" || { cat "$work/d.err" >&2; fail "failed worker: exit $rc"; }
[ ! -e "$work/d/meta.json" ] && [ ! -e "$work/d/base.gguf" ] || fail "a run whose worker failed left a result"

[ $fails -eq 0 ] && echo "train_determinism: all passed" || echo "train_determinism: $fails failed"
[ $fails -eq 0 ]
