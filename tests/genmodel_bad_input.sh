#!/usr/bin/env bash
# genmodel_bad_input.sh GENMODEL VOCAB WORKDIR: runs sr-genmodel on bad arguments and inputs. Each
# case must exit with status 1 (not a crash or an abort), print an error line matching a pattern on
# stderr, and leave neither the output file nor its OUT.tmp.* file behind.
set -u
gen=$1 vocab=$2 work=$3
rm -rf "$work" && mkdir -p "$work" || exit 1
out=$work/out.gguf
fails=0

# deterministic inputs: garbage bytes are the start of the sr-genmodel binary itself
garbage=$work/garbage.gguf
head -c 4096 "$gen" >"$garbage"
printf 'GGUF\003\000\000\000' >"$work/header-only.gguf"       # valid magic/version, then EOF
{ printf 'GGUF\003\000\000\000'; head -c 4096 "$gen"; } >"$work/bad-counts.gguf"
# a valid GGUF v3 with one key (general.architecture = "x") and no tokenizer
{ printf 'GGUF\003\000\000\000' ; printf '\000\000\000\000\000\000\000\000'   # 0 tensors
  printf '\001\000\000\000\000\000\000\000'                                  # 1 key
  printf '\024\000\000\000\000\000\000\000general.architecture'              # key (20 bytes)
  printf '\010\000\000\000\001\000\000\000\000\000\000\000x'                 # STRING "x"
} >"$work/no-tokenizer.gguf"
# the same with tokenizer.ggml.model = (u32) 1: a typed getter would abort on it
{ printf 'GGUF\003\000\000\000' ; printf '\000\000\000\000\000\000\000\000'
  printf '\001\000\000\000\000\000\000\000'
  printf '\024\000\000\000\000\000\000\000tokenizer.ggml.model'
  printf '\004\000\000\000\001\000\000\000'                                  # UINT32 1
} >"$work/wrong-type.gguf"
head -c 100000 "$vocab" >"$work/truncated.gguf"               # cut inside the token strings

# expect NAME PATTERN ARGS...: PATTERN is an extended regex the error line must match.
expect() {
    local name=$1 pat=$2
    shift 2
    [ -d "$out" ] || rm -f "$out"
    rm -f "$out".tmp.*
    "$gen" "$@" >"$work/stdout" 2>"$work/stderr"
    local rc=$?
    local err
    err=$(cat "$work/stderr")
    local ok=1
    if [ "$rc" -ne 1 ]; then
        echo "FAIL [$name]: exit status $rc, expected 1"; ok=0
    fi
    if ! grep -Eq "$pat" "$work/stderr"; then
        echo "FAIL [$name]: stderr does not match /$pat/: $err"; ok=0
    fi
    if [ "$(wc -l <"$work/stderr")" -ne 1 ]; then
        echo "FAIL [$name]: expected a one-line error, got: $err"; ok=0
    fi
    if [ -f "$out" ] || compgen -G "$out.tmp.*" >/dev/null ||
        compgen -G "/nonexistent-dir/x.gguf*" >/dev/null; then
        echo "FAIL [$name]: output or temp file left behind: $(ls "$out"* 2>/dev/null)"; ok=0
    fi
    if [ $ok = 1 ]; then
        echo "ok   [$name]: $err"
    else
        fails=$((fails + 1))
    fi
}

v=(--vocab "$vocab")
expect "zero layers"           'layers.*out of range'        "${v[@]}" -o "$out" --layers 0
expect "negative embd"         'embd.*out of range'          "${v[@]}" -o "$out" --embd -64
expect "zero ff"               'ff.*out of range'            "${v[@]}" -o "$out" --ff 0
expect "zero ctx"              'ctx.*out of range'           "${v[@]}" -o "$out" --ctx 0
expect "zero heads"            'heads.*out of range'         "${v[@]}" -o "$out" --heads 0
expect "heads !| embd"         'heads 3 does not divide'     "${v[@]}" -o "$out" --heads 3
expect "kv-heads !| heads"     'kv-heads 3 does not divide'  "${v[@]}" -o "$out" --kv-heads 3
expect "odd head_dim"          'head_dim.*odd'               "${v[@]}" -o "$out" --embd 12 --heads 4
expect "non-numeric layers"    "'abc' is not an integer"     "${v[@]}" -o "$out" --layers abc
expect "trailing junk"         "'4x' is not an integer"      "${v[@]}" -o "$out" --layers 4x
expect "negative seed"         'seed.*not an unsigned'       "${v[@]}" -o "$out" --seed -1
expect "bad bias"              'bias-digits.*not a finite'   "${v[@]}" -o "$out" --bias-digits nan
expect "unknown preset"        "unknown preset 'huge'"       "${v[@]}" -o "$out" --preset huge
expect "unknown option"        "unknown option '--bogus'"    "${v[@]}" -o "$out" --bogus 1
expect "missing value"         'needs a value'               "${v[@]}" -o "$out" --layers
expect "missing output"        'output PATH is required'     "${v[@]}"
expect "missing --vocab"       'vocab PATH is required'      -o "$out"
expect "unwritable path"       "cannot write output '/nonexistent-dir/x.gguf'" \
                                                             "${v[@]}" -o /nonexistent-dir/x.gguf
expect "missing vocab"         "cannot read vocab .*No such file" --vocab "$work/none.gguf" -o "$out"
expect "vocab is a directory"  'not a regular file'          --vocab "$work" -o "$out"
expect "garbage vocab"         'not a valid GGUF'            --vocab "$garbage" -o "$out"
expect "header-only vocab"     'not a valid GGUF'            --vocab "$work/header-only.gguf" -o "$out"
expect "truncated vocab"       'not a valid GGUF'            --vocab "$work/truncated.gguf" -o "$out"
expect "bad counts vocab"      'not a valid GGUF'            --vocab "$work/bad-counts.gguf" -o "$out"
expect "vocab w/o tokenizer"   "has no 'tokenizer.ggml.model' key" \
                                                             --vocab "$work/no-tokenizer.gguf" -o "$out"
expect "tokenizer key type"    "'tokenizer.ggml.model' has the wrong type" \
                                                             --vocab "$work/wrong-type.gguf" -o "$out"

# output path is an existing directory: rename fails, the temp file must be removed
mkdir -p "$work/outdir/sub"
out=$work/outdir
expect "output is a directory" 'cannot rename'               "${v[@]}" -o "$out" --quiet
rm -rf "$work/outdir"

if [ $fails -ne 0 ]; then
    echo "$fails case(s) failed"
    exit 1
fi
echo "all bad-input cases passed"
