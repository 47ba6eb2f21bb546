# pair_models.sh: sourced by the bench scripts that run the trained pair through specreason-eval.
# pair_models PROG BUILD sets dir, small, base, label, jp (judge prompt) and jf (judge prefill):
# the pair is SR_PAIR_DIR, else the newest trained pair in the cache; SR_PAIR_PAD=SMALL_FF,BASE_FF
# pads it (`sr-train pad`, written once next to the pair) as bench_pair.sh does.
pair_models() {
    local prog=$1 build=$2 d pad_small pad_base train ps pb
    dir=${SR_PAIR_DIR:-}
    if [ -z "$dir" ]; then
        local cache=${SPECREASON_CACHE:-$HOME/.cache/specreason}
        for d in $(ls -td "$cache"/pair/*/ 2>/dev/null); do
            [ -f "$d/meta.json" ] && { dir=${d%/}; break; }
        done
    fi
    [ -n "$dir" ] && [ -f "$dir/meta.json" ] || { echo "$prog: no trained pair (set SR_PAIR_DIR)" >&2; exit 1; }
    small=$dir/small.gguf
    base=$dir/base.gguf
    label=trained
    if [ -n "${SR_PAIR_PAD:-}" ]; then
        IFS=, read -r pad_small pad_base <<<"$SR_PAIR_PAD"
        case "$pad_small,$pad_base" in *[!0-9,]*|,*|*,) echo "$prog: SR_PAIR_PAD must be SMALL_FF,BASE_FF" >&2; exit 2 ;; esac
        train=${SR_TRAIN:-$build/tools/train/sr-train}
        ps=$dir/small-ff$pad_small.gguf
        pb=$dir/base-ff$pad_base.gguf
        [ -f "$ps" ] || "$train" pad -m "$small" -o "$ps" --ff "$pad_small"
        [ -f "$pb" ] || "$train" pad -m "$base" -o "$pb" --ff "$pad_base"
        small=$ps
        base=$pb
        label="trained, padded $SR_PAIR_PAD"
    fi
    jp=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["judge_prompt"])' "$dir/meta.json")
    jf=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["judge_prefill"])' "$dir/meta.json")
}
