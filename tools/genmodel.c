/*
 * genmodel.c: sr-genmodel, writes a small random-weight GGUF of architecture `qwen2` that carries the
 * real Qwen2 tokenizer (every `tokenizer.*` key copied from a vocab GGUF such as llama.cpp's
 * models/ggml-vocab-qwen2.gguf). The model tests and benchmarks generate their models with it at
 * test time (tests/genmodel.cmake), so no weights are checked in.
 *
 * Invariants: the same arguments give a byte-identical file (portable PRNG, fixed key and tensor
 * order, no timestamps); a failed run leaves no output file behind (we write OUT.tmp.<pid> and
 * rename it); user input never reaches a ggml/gguf assertion (everything is validated first).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#define ARCH "qwen2"

/* Sanity caps on sizes so a typo cannot ask for terabytes; these are far above any test model. */
#define MAX_LAYERS 256
#define MAX_EMBD 16384
#define MAX_HEADS 1024
#define MAX_FF 131072
#define MAX_CTX 16777216
#define MAX_TOTAL_BYTES ((uint64_t)8 << 30)

struct gen_params {
    const char *vocab;
    const char *output;
    long layers, embd, heads, kv_heads, ff, ctx;
    uint64_t seed;
    double bias_newlines, bias_digits;
    bool f32, quiet;
    long pad_vocab;        /* extra "[PAD<id>]" tokens appended to the vocabulary */
    const char *quantize;  /* --quantize TYPE: quantize --input instead of generating */
    const char *input;
    int add_bos;           /* tokenizer.ggml.add_bos_token: -1 = as the vocab file, 0 = false, 1 = true */
    long long_token;       /* the last padding token's text is this many bytes long (0 = as usual) */
};

struct preset {
    const char *name;
    long layers, embd, heads, kv_heads, ff, ctx;
};

/* head_dim 16 (small) and 64 (base); base costs several times more per token, mostly in the tied
 * [E, n_vocab] output matmul. */
static const struct preset presets[] = {
    {"small", 2, 64, 4, 2, 192, 4096},
    {"base", 4, 256, 4, 2, 768, 4096},
};

static const char *progname = "sr-genmodel";
static char tmp_path[4096]; /* non-empty while a temp file may exist */
static char ggml_last_error[512];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...) {
    va_list ap;
    if (tmp_path[0]) {
        remove(tmp_path);
    }
    fprintf(stderr, "%s: error: ", progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ggml/gguf log to stderr by default and in several lines; keep the last error so that our own
 * one-line message can quote it. */
static void ggml_log_quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level != GGML_LOG_LEVEL_ERROR || text == NULL) {
        return;
    }
    snprintf(ggml_last_error, sizeof ggml_last_error, "%s", text);
    size_t n = strlen(ggml_last_error);
    while (n > 0 && (ggml_last_error[n - 1] == '\n' || ggml_last_error[n - 1] == ' ')) {
        ggml_last_error[--n] = '\0';
    }
    for (char *c = ggml_last_error; *c; c++) { /* e.g. the bad magic bytes of a corrupt file */
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            *c = '?';
        }
    }
}

/* ------------------------------------------------------------------------------------ PRNG
 * splitmix64 (Steele, Lea, Flood 2014; public-domain reference by S. Vigna). Each tensor has its
 * own stream seeded with splitmix64(seed ^ fnv1a64(name)), so a tensor's values depend only on the
 * seed, its name and its shape. Uniform floats take the top 24 bits: exact in float, portable. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 0x100000001B3ULL;
    }
    return h;
}

/* uniform in [-1, 1) */
static float rand_sym(uint64_t *state) {
    return (float)(splitmix64(state) >> 40) * (1.0f / 8388608.0f) - 1.0f;
}

/* ------------------------------------------------------------------------------------ options */
static void usage(FILE *f) {
    fprintf(f,
            "usage: %s --vocab PATH -o PATH [options]\n"
            "Writes a random-weight qwen2 GGUF with the tokenizer copied from a vocab GGUF.\n"
            "\n"
            "  --vocab PATH          vocab GGUF to copy tokenizer.* keys from (required)\n"
            "  -o, --output PATH     output GGUF (required; written atomically)\n"
            "  --preset NAME         small | base (default: small); explicit sizes override it\n"
            "                          small: layers 2, embd 64, heads 4, kv-heads 2, ff 192, ctx 4096\n"
            "                          base:  layers 4, embd 256, heads 4, kv-heads 2, ff 768, ctx 4096\n"
            "  --layers N            transformer blocks, 1..%d (default: preset)\n"
            "  --embd N              embedding length, 1..%d (default: preset)\n"
            "  --heads N             attention heads, must divide embd; head_dim even (default: preset)\n"
            "  --kv-heads N          KV heads, must divide heads (default: preset)\n"
            "  --ff N                feed-forward length, 1..%d (default: preset)\n"
            "  --ctx N               training context length, 1..%d (default: preset)\n"
            "  --seed N              PRNG seed, unsigned 64-bit (default: 0)\n"
            "  --bias-newlines B     add B to logits of tokens containing \"\\n\\n\" (default: 0)\n"
            "  --bias-digits B       add B to logits of the tokens \"0\"..\"9\" (default: 0)\n"
            "                          a non-zero bias adds an output.bias [n_vocab] tensor\n"
            "  --f32                 store all tensors F32 (default: F16 for matrices whose rows\n"
            "                          are a multiple of 128 elements, F32 for the rest)\n"
            "  --pad-vocab N         append N unused \"[PAD<id>]\" tokens, as padded vocabularies do\n"
            "                          (QwQ-32B has 152064 entries, R1-Distill-Qwen-1.5B 151936)\n"
            "  --add-bos true|false  set tokenizer.ggml.add_bos_token (default: as in --vocab)\n"
            "  --long-token N        the last --pad-vocab token gets an N-byte text (tests of long tokens)\n"
            "  --quantize TYPE       instead of generating, quantize --input to TYPE (q8_0, q4_0, f16)\n"
            "                          with llama.cpp: a cheaper copy that predicts almost the same\n"
            "  --input PATH          the model to quantize\n"
            "  --quiet               print nothing on success\n"
            "  -h, --help            show this help\n",
            progname, MAX_LAYERS, MAX_EMBD, MAX_FF, MAX_CTX);
}

static long parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE) {
        die("%s: '%s' is not an integer", opt, s);
    }
    if (v < lo || v > hi) {
        die("%s: %ld is out of range [%ld, %ld]", opt, v, lo, hi);
    }
    return v;
}

static uint64_t parse_u64(const char *opt, const char *s) {
    char *end = NULL;
    const char *p = s;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*p == '-' || *p == '+' || end == s || *end != '\0' || errno == ERANGE) {
        die("%s: '%s' is not an unsigned 64-bit integer", opt, s);
    }
    return (uint64_t)v;
}

static double parse_double(const char *opt, const char *s) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || fabs(v) > 1e4) {
        die("%s: '%s' is not a finite number in [-1e4, 1e4]", opt, s);
    }
    return v;
}

static void parse_args(int argc, char **argv, struct gen_params *p) {
    const struct preset *pre = &presets[0];
    long layers = -1, embd = -1, heads = -1, kv_heads = -1, ff = -1, ctx = -1;
    memset(p, 0, sizeof *p);
    p->add_bos = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char name[64];
        const char *val = NULL;
        /* accept both "--opt value" and "--opt=value" */
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq != NULL && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(name, "--f32") == 0 || strcmp(name, "--quiet") == 0) {
            if (val != NULL) {
                die("%s takes no value", name);
            }
            if (strcmp(name, "--f32") == 0) {
                p->f32 = true;
            } else {
                p->quiet = true;
            }
            continue;
        }
        static const char *const with_value[] = {
            "--vocab", "-o", "--output", "--layers", "--embd", "--heads", "--kv-heads", "--ff",
            "--ctx", "--seed", "--preset", "--bias-newlines", "--bias-digits", "--pad-vocab",
            "--quantize", "--input", "--add-bos", "--long-token"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
            known = known || strcmp(name, with_value[k]) == 0;
        }
        if (!known) {
            die("unknown option '%s' (see --help)", a);
        }
        if (val == NULL) {
            if (i + 1 >= argc) {
                die("option %s needs a value", name);
            }
            val = argv[++i];
        }
        if (strcmp(name, "--vocab") == 0) {
            p->vocab = val;
        } else if (strcmp(name, "-o") == 0 || strcmp(name, "--output") == 0) {
            p->output = val;
        } else if (strcmp(name, "--layers") == 0) {
            layers = parse_long(name, val, 1, MAX_LAYERS);
        } else if (strcmp(name, "--embd") == 0) {
            embd = parse_long(name, val, 1, MAX_EMBD);
        } else if (strcmp(name, "--heads") == 0) {
            heads = parse_long(name, val, 1, MAX_HEADS);
        } else if (strcmp(name, "--kv-heads") == 0) {
            kv_heads = parse_long(name, val, 1, MAX_HEADS);
        } else if (strcmp(name, "--ff") == 0) {
            ff = parse_long(name, val, 1, MAX_FF);
        } else if (strcmp(name, "--ctx") == 0) {
            ctx = parse_long(name, val, 1, MAX_CTX);
        } else if (strcmp(name, "--seed") == 0) {
            p->seed = parse_u64(name, val);
        } else if (strcmp(name, "--bias-newlines") == 0) {
            p->bias_newlines = parse_double(name, val);
        } else if (strcmp(name, "--bias-digits") == 0) {
            p->bias_digits = parse_double(name, val);
        } else if (strcmp(name, "--pad-vocab") == 0) {
            p->pad_vocab = parse_long(name, val, 0, 65536);
        } else if (strcmp(name, "--quantize") == 0) {
            p->quantize = val;
        } else if (strcmp(name, "--input") == 0) {
            p->input = val;
        } else if (strcmp(name, "--long-token") == 0) {
            p->long_token = parse_long(name, val, 0, 4096);
        } else if (strcmp(name, "--add-bos") == 0) {
            if (strcmp(val, "true") == 0) {
                p->add_bos = 1;
            } else if (strcmp(val, "false") == 0) {
                p->add_bos = 0;
            } else {
                die("--add-bos: '%s' is not true or false", val);
            }
        } else { /* --preset */
            pre = NULL;
            for (size_t k = 0; k < sizeof presets / sizeof presets[0]; k++) {
                if (strcmp(val, presets[k].name) == 0) {
                    pre = &presets[k];
                }
            }
            if (pre == NULL) {
                die("--preset: unknown preset '%s' (small | base)", val);
            }
        }
    }
    if (p->long_token > 0 && (p->pad_vocab < 1 || p->long_token < 7)) {
        die("--long-token needs --pad-vocab 1 or more and a length of at least 7");
    }
    if (p->quantize != NULL) {
        if (p->input == NULL) {
            die("--quantize needs --input PATH");
        }
        if (p->output == NULL || p->output[0] == '\0') {
            die("-o/--output PATH is required (see --help)");
        }
        return;
    }
    if (p->vocab == NULL) {
        die("--vocab PATH is required (see --help)");
    }
    if (p->output == NULL || p->output[0] == '\0') {
        die("-o/--output PATH is required (see --help)");
    }
    p->layers = layers > 0 ? layers : pre->layers;
    p->embd = embd > 0 ? embd : pre->embd;
    p->heads = heads > 0 ? heads : pre->heads;
    p->kv_heads = kv_heads > 0 ? kv_heads : pre->kv_heads;
    p->ff = ff > 0 ? ff : pre->ff;
    p->ctx = ctx > 0 ? ctx : pre->ctx;
    if (p->embd % p->heads != 0) {
        die("--heads %ld does not divide --embd %ld", p->heads, p->embd);
    }
    if (p->heads % p->kv_heads != 0) {
        die("--kv-heads %ld does not divide --heads %ld", p->kv_heads, p->heads);
    }
    if ((p->embd / p->heads) % 2 != 0) {
        die("head_dim = embd/heads = %ld is odd; RoPE needs an even head_dim", p->embd / p->heads);
    }
}

/* ------------------------------------------------------------------------------------ tokenizer */
static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static size_t gguf_type_size_checked(enum gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* Copies one key of src into dst, dispatching on its type (the typed getters abort on a mismatch). */
static void copy_kv(struct gguf_context *dst, const struct gguf_context *src, int64_t id,
                    const char *vocab_path) {
    const char *key = gguf_get_key(src, id);
    enum gguf_type t = gguf_get_kv_type(src, id);
    switch (t) {
    case GGUF_TYPE_UINT8: gguf_set_val_u8(dst, key, gguf_get_val_u8(src, id)); break;
    case GGUF_TYPE_INT8: gguf_set_val_i8(dst, key, gguf_get_val_i8(src, id)); break;
    case GGUF_TYPE_UINT16: gguf_set_val_u16(dst, key, gguf_get_val_u16(src, id)); break;
    case GGUF_TYPE_INT16: gguf_set_val_i16(dst, key, gguf_get_val_i16(src, id)); break;
    case GGUF_TYPE_UINT32: gguf_set_val_u32(dst, key, gguf_get_val_u32(src, id)); break;
    case GGUF_TYPE_INT32: gguf_set_val_i32(dst, key, gguf_get_val_i32(src, id)); break;
    case GGUF_TYPE_FLOAT32: gguf_set_val_f32(dst, key, gguf_get_val_f32(src, id)); break;
    case GGUF_TYPE_UINT64: gguf_set_val_u64(dst, key, gguf_get_val_u64(src, id)); break;
    case GGUF_TYPE_INT64: gguf_set_val_i64(dst, key, gguf_get_val_i64(src, id)); break;
    case GGUF_TYPE_FLOAT64: gguf_set_val_f64(dst, key, gguf_get_val_f64(src, id)); break;
    case GGUF_TYPE_BOOL: gguf_set_val_bool(dst, key, gguf_get_val_bool(src, id)); break;
    case GGUF_TYPE_STRING: gguf_set_val_str(dst, key, gguf_get_val_str(src, id)); break;
    case GGUF_TYPE_ARRAY: {
        enum gguf_type at = gguf_get_arr_type(src, id);
        size_t n = gguf_get_arr_n(src, id);
        if (at == GGUF_TYPE_STRING) {
            const char **strs = n > 0 ? malloc(n * sizeof *strs) : NULL;
            if (n > 0 && strs == NULL) {
                die("out of memory copying '%s'", key);
            }
            for (size_t i = 0; i < n; i++) {
                strs[i] = gguf_get_arr_str(src, id, i);
            }
            gguf_set_arr_str(dst, key, strs, n);
            free(strs);
        } else if (gguf_type_size_checked(at) > 0) {
            gguf_set_arr_data(dst, key, at, gguf_get_arr_data(src, id), n);
        } else {
            die("vocab '%s': key '%s' is an array of unsupported type %s", vocab_path, key,
                gguf_type_name(at));
        }
        break;
    }
    default:
        die("vocab '%s': key '%s' has unsupported type %d", vocab_path, key, (int)t);
    }
}

/* Returns the key id, or dies naming the key when it is missing or has the wrong type. */
static int64_t require_key(const struct gguf_context *g, const char *path, const char *key,
                           enum gguf_type type, enum gguf_type arr_type) {
    int64_t id = gguf_find_key(g, key);
    if (id < 0) {
        die("vocab '%s' has no '%s' key (not a tokenizer GGUF?)", path, key);
    }
    if (gguf_get_kv_type(g, id) != type ||
        (type == GGUF_TYPE_ARRAY && gguf_get_arr_type(g, id) != arr_type)) {
        die("vocab '%s': key '%s' has the wrong type", path, key);
    }
    return id;
}

/* ------------------------------------------------------------------------------------ tensors */
struct tensor_list {
    struct ggml_context *ctx; /* tensor headers only (no_alloc), room for `cap` of them */
    void **data;              /* owned data of each tensor, in gguf order */
    size_t n, cap;
};

/* Creates tensor `name` [ne0, ne1] (ne1 = 1 for vectors), fills it and adds it to the gguf.
 * kind: 'u' uniform in ±scale, 'c' constant `scale`, 'z' zeros (filled later by the caller). */
static float *add_tensor(struct gguf_context *g, struct tensor_list *tl, const char *name,
                         int64_t ne0, int64_t ne1, bool f16, char kind, float scale,
                         uint64_t seed) {
    if (tl->n >= tl->cap) { /* a miscount here would make ggml abort */
        die("internal error: more than %zu tensors", tl->cap);
    }
    enum ggml_type type = f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    struct ggml_tensor *t = ne1 > 1 || f16 ? ggml_new_tensor_2d(tl->ctx, type, ne0, ne1)
                                           : ggml_new_tensor_1d(tl->ctx, type, ne0);
    if (t == NULL) {
        die("cannot create tensor header '%s'", name);
    }
    ggml_set_name(t, name);
    size_t n = (size_t)ne0 * (size_t)ne1;
    float *f = malloc(n * sizeof *f);
    if (f == NULL) {
        die("out of memory for tensor '%s' (%zu elements)", name, n);
    }
    uint64_t st = seed ^ fnv1a64(name);
    splitmix64(&st); /* decorrelate nearby seeds */
    for (size_t i = 0; i < n; i++) {
        f[i] = kind == 'u' ? scale * rand_sym(&st) : kind == 'c' ? scale : 0.0f;
    }
    void *data = f;
    if (f16) {
        ggml_fp16_t *h = malloc(n * sizeof *h);
        if (h == NULL) {
            die("out of memory for tensor '%s' (%zu elements)", name, n);
        }
        ggml_fp32_to_fp16_row(f, h, (int64_t)n);
        data = h;
    }
    gguf_add_tensor(g, t);
    gguf_set_tensor_data(g, name, data);
    tl->data[tl->n++] = data;
    if (f16) {
        free(f);
        return NULL;
    }
    return f; /* == data; the caller may still adjust F32 values before the write */
}

/* Storage type of a matrix whose rows (the input dimension ne0) have `row` elements. F16 halves the
 * file, but ggml's CPU F16 dot product (ggml_vec_dot_f16) runs its SIMD loop only over multiples of
 * GGML_F16_STEP (128 on AVX512-FP16 CPUs) and the rest scalar: a 64-wide F16 token_embd made the
 * small model ~5x slower per token than an F32 one. So rows that are not a multiple of 128 are F32. */
static bool use_f16(const struct gen_params *p, long row) {
    return !p->f32 && row % 128 == 0;
}

/* uniform ±a with a = gain·sqrt(3/fan_in): element std gain/sqrt(fan_in), so y = W x has element
 * std ≈ gain · rms(x) and activations stay O(1) through the residual stream. */
static float uscale(float gain, long fan_in) {
    return gain * sqrtf(3.0f / (float)fan_in);
}

/* --quantize: llama.cpp's own quantizer, written atomically like a generated model. */
static int quantize_main(const struct gen_params *p) {
    struct {
        const char *name;
        enum llama_ftype ftype;
    } types[] = {{"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0}, {"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0}, {"f16", LLAMA_FTYPE_MOSTLY_F16}};
    const enum llama_ftype *ft = NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(p->quantize, types[i].name) == 0) {
            ft = &types[i].ftype;
        }
    }
    if (ft == NULL) {
        die("--quantize: unknown type '%s' (q8_0 | q4_0 | f16)", p->quantize);
    }
    struct stat st;
    if (stat(p->input, &st) != 0) {
        die("cannot read '%s': %s", p->input, strerror(errno));
    }
    int nw = snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%ld", p->output, (long)getpid());
    if (nw < 0 || (size_t)nw >= sizeof tmp_path) {
        tmp_path[0] = '\0';
        die("output path too long");
    }
    llama_log_set(ggml_log_quiet, NULL);
    llama_backend_init();
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.ftype = *ft;
    qp.nthread = 1;
    if (llama_model_quantize(p->input, tmp_path, &qp) != 0) {
        die("quantizing '%s' failed%s%s", p->input, ggml_last_error[0] ? ": " : "", ggml_last_error);
    }
    if (rename(tmp_path, p->output) != 0) {
        die("cannot rename '%s' to '%s': %s", tmp_path, p->output, strerror(errno));
    }
    tmp_path[0] = '\0';
    if (!p->quiet) {
        printf("%s: wrote %s (%s of %s)\n", progname, p->output, p->quantize, p->input);
    }
    llama_backend_free();
    return 0;
}

int main(int argc, char **argv) {
    struct gen_params p;
    parse_args(argc, argv, &p);
    ggml_log_set(ggml_log_quiet, NULL);
    if (p.quantize != NULL) {
        return quantize_main(&p);
    }

    /* ---- vocab */
    struct stat st;
    if (stat(p.vocab, &st) != 0) {
        die("cannot read vocab '%s': %s", p.vocab, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        die("vocab '%s' is not a regular file", p.vocab);
    }
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *vocab = gguf_init_from_file(p.vocab, gp);
    if (vocab == NULL) {
        die("vocab '%s' is not a valid GGUF file%s%s", p.vocab, ggml_last_error[0] ? ": " : "",
            ggml_last_error);
    }
    int64_t id_model =
        require_key(vocab, p.vocab, "tokenizer.ggml.model", GGUF_TYPE_STRING, GGUF_TYPE_STRING);
    int64_t id_tokens =
        require_key(vocab, p.vocab, "tokenizer.ggml.tokens", GGUF_TYPE_ARRAY, GGUF_TYPE_STRING);
    if (strcmp(gguf_get_val_str(vocab, id_model), "gpt2") == 0) {
        require_key(vocab, p.vocab, "tokenizer.ggml.merges", GGUF_TYPE_ARRAY, GGUF_TYPE_STRING);
    }
    size_t n_vocab = gguf_get_arr_n(vocab, id_tokens);
    const size_t n_vocab_src = n_vocab; /* tokens in the vocab file (before --pad-vocab) */
    if (n_vocab == 0 || n_vocab > (size_t)INT32_MAX) {
        die("vocab '%s' has %zu tokens", p.vocab, n_vocab);
    }

    /* ---- size check before allocating anything large */
    const long hd = p.embd / p.heads, kv = hd * p.kv_heads;
    const uint64_t sz_e = use_f16(&p, p.embd) ? 2 : 4, sz_f = use_f16(&p, p.ff) ? 2 : 4;
    const uint64_t E64 = (uint64_t)p.embd, F64 = (uint64_t)p.ff, KV64 = (uint64_t)kv;
    uint64_t per_layer = sz_e * (E64 * E64 * 2 + E64 * KV64 * 2 + E64 * F64 * 2) + sz_f * F64 * E64 +
                         4u * (E64 * 3 + KV64 * 2);
    uint64_t total = sz_e * E64 * (n_vocab + (uint64_t)p.pad_vocab) + per_layer * (uint64_t)p.layers + 4u * (uint64_t)n_vocab;
    if (total > MAX_TOTAL_BYTES) {
        die("the model would need %" PRIu64 " MiB of tensor data (limit %" PRIu64 " MiB)",
            total >> 20, MAX_TOTAL_BYTES >> 20);
    }

    /* ---- metadata: our own hparams first, then the tokenizer */
    struct gguf_context *g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", ARCH);
    gguf_set_val_str(g, "general.name", "specreason-genmodel");
    /* LLAMA_FTYPE_ALL_F32 (0) / LLAMA_FTYPE_MOSTLY_F16 (1); see use_f16() */
    const bool any_f16 = use_f16(&p, p.embd) || use_f16(&p, p.ff);
    gguf_set_val_u32(g, "general.file_type", any_f16 ? 1u : 0u);
    gguf_set_val_u32(g, ARCH ".context_length", (uint32_t)p.ctx);
    gguf_set_val_u32(g, ARCH ".embedding_length", (uint32_t)p.embd);
    gguf_set_val_u32(g, ARCH ".block_count", (uint32_t)p.layers);
    gguf_set_val_u32(g, ARCH ".feed_forward_length", (uint32_t)p.ff);
    gguf_set_val_u32(g, ARCH ".attention.head_count", (uint32_t)p.heads);
    gguf_set_val_u32(g, ARCH ".attention.head_count_kv", (uint32_t)p.kv_heads);
    gguf_set_val_u32(g, ARCH ".rope.dimension_count", (uint32_t)hd);
    gguf_set_val_f32(g, ARCH ".rope.freq_base", 1e6f);                /* as Qwen2 */
    gguf_set_val_f32(g, ARCH ".attention.layer_norm_rms_epsilon", 1e-6f); /* as Qwen2 */
    /* provenance (llama.cpp ignores unknown keys) */
    gguf_set_val_u64(g, "specreason.genmodel.seed", p.seed);
    gguf_set_val_f32(g, "specreason.genmodel.bias_newlines", (float)p.bias_newlines);
    gguf_set_val_f32(g, "specreason.genmodel.bias_digits", (float)p.bias_digits);
    for (int64_t i = 0; i < gguf_get_n_kv(vocab); i++) {
        if (starts_with(gguf_get_key(vocab, i), "tokenizer.")) {
            copy_kv(g, vocab, i, p.vocab);
        }
    }
    if (p.add_bos >= 0) {
        gguf_set_val_bool(g, "tokenizer.ggml.add_bos_token", p.add_bos == 1);
    }
    if (p.pad_vocab > 0) {
        /* Padded vocabularies (QwQ-32B: 152064 rows for 151665 real tokens) end with unused
         * "[PAD<id>]" entries, as llama.cpp's converter writes them. */
        size_t n_new = n_vocab + (size_t)p.pad_vocab;
        const char **strs = calloc(n_new, sizeof *strs);
        char *names = calloc((size_t)p.pad_vocab, 32);
        int32_t *types = calloc(n_new, sizeof *types);
        if (strs == NULL || names == NULL || types == NULL) {
            die("out of memory");
        }
        for (size_t i = 0; i < n_vocab; i++) {
            strs[i] = gguf_get_arr_str(vocab, id_tokens, i);
        }
        for (long i = 0; i < p.pad_vocab; i++) {
            snprintf(names + 32 * i, 32, "[PAD%zu]", n_vocab + (size_t)i);
            strs[n_vocab + (size_t)i] = names + 32 * i;
        }
        char *long_name = NULL;
        if (p.long_token > 0) { /* "[LONG" + x... + "]", p.long_token bytes in all */
            long_name = malloc((size_t)p.long_token + 8);
            if (long_name == NULL) {
                die("out of memory");
            }
            memset(long_name, 'x', (size_t)p.long_token);
            memcpy(long_name, "[LONG", 5);
            long_name[p.long_token - 1] = ']';
            long_name[p.long_token] = '\0';
            strs[n_vocab + (size_t)p.pad_vocab - 1] = long_name;
        }
        gguf_set_arr_str(g, "tokenizer.ggml.tokens", strs, n_new);
        int64_t id_types = gguf_find_key(vocab, "tokenizer.ggml.token_type");
        if (id_types >= 0 && gguf_get_kv_type(vocab, id_types) == GGUF_TYPE_ARRAY &&
            gguf_get_arr_type(vocab, id_types) == GGUF_TYPE_INT32 && gguf_get_arr_n(vocab, id_types) == n_vocab) {
            memcpy(types, gguf_get_arr_data(vocab, id_types), n_vocab * sizeof *types);
            for (size_t i = n_vocab; i < n_new; i++) {
                types[i] = 5; /* LLAMA_TOKEN_TYPE_UNUSED */
            }
            if (long_name != NULL) {
                types[n_new - 1] = 4; /* LLAMA_TOKEN_TYPE_USER_DEFINED: its text is its piece */
            }
            gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n_new);
        }
        free(strs);
        free(names);
        free(types);
        free(long_name);
        n_vocab = n_new;
    }

    /* ---- tensors (names/shapes: llama.cpp src/models/qwen2.cpp; ne0 is the input dimension) */
    struct tensor_list tl;
    memset(&tl, 0, sizeof tl);
    tl.cap = 3 + 12 * (size_t)p.layers; /* token_embd, output_norm, output.bias + 12 per block */
    tl.data = calloc(tl.cap, sizeof *tl.data);
    struct ggml_init_params ip = {
        .mem_size = tl.cap * ggml_tensor_overhead(), .mem_buffer = NULL, .no_alloc = true};
    tl.ctx = tl.data != NULL ? ggml_init(ip) : NULL;
    if (tl.ctx == NULL) {
        die("out of memory for %zu tensor headers", tl.cap);
    }
    const bool f16_e = use_f16(&p, p.embd), f16_f = use_f16(&p, p.ff);
    const long E = p.embd, F = p.ff;
    const int64_t V = (int64_t)n_vocab;
    char name[GGML_MAX_NAME];
    /* Tied output: logit = rms_norm(h) · e_tok with ||rms_norm(h)|| = sqrt(E), so an embedding
     * element std of 1.25/sqrt(E) gives logits of std ≈ 1.25 before any bias. */
    add_tensor(g, &tl, "token_embd.weight", E, V, f16_e, 'u', uscale(1.25f, E), p.seed);
    add_tensor(g, &tl, "output_norm.weight", E, 1, false, 'c', 1.0f, p.seed);
    if (p.bias_newlines != 0.0 || p.bias_digits != 0.0) {
        float *b = add_tensor(g, &tl, "output.bias", V, 1, false, 'z', 0.0f, p.seed);
        for (size_t i = 0; i < n_vocab_src; i++) {
            const char *s = gguf_get_arr_str(vocab, id_tokens, i);
            /* byte-level BPE spells '\n' as U+010A 'Ċ' (UTF-8 C4 8A) */
            if (strstr(s, "\xC4\x8A\xC4\x8A") != NULL) {
                b[i] += (float)p.bias_newlines;
            }
            if (s[0] >= '0' && s[0] <= '9' && s[1] == '\0') {
                b[i] += (float)p.bias_digits;
            }
        }
    }
    for (long l = 0; l < p.layers; l++) {
#define TN(suffix) (snprintf(name, sizeof name, "blk.%ld." suffix, l), name)
        add_tensor(g, &tl, TN("attn_norm.weight"), E, 1, false, 'c', 1.0f, p.seed);
        /* q/k gain 1.5: attention scores of std ≈ 2 rather than near-uniform attention */
        add_tensor(g, &tl, TN("attn_q.weight"), E, E, f16_e, 'u', uscale(1.5f, E), p.seed);
        add_tensor(g, &tl, TN("attn_k.weight"), E, kv, f16_e, 'u', uscale(1.5f, E), p.seed);
        add_tensor(g, &tl, TN("attn_v.weight"), E, kv, f16_e, 'u', uscale(1.0f, E), p.seed);
        add_tensor(g, &tl, TN("attn_q.bias"), E, 1, false, 'u', 0.2f, p.seed);
        add_tensor(g, &tl, TN("attn_k.bias"), kv, 1, false, 'u', 0.2f, p.seed);
        add_tensor(g, &tl, TN("attn_v.bias"), kv, 1, false, 'u', 0.2f, p.seed);
        add_tensor(g, &tl, TN("attn_output.weight"), E, E, f16_e, 'u', uscale(1.0f, E), p.seed);
        add_tensor(g, &tl, TN("ffn_norm.weight"), E, 1, false, 'c', 1.0f, p.seed);
        add_tensor(g, &tl, TN("ffn_gate.weight"), E, F, f16_e, 'u', uscale(1.0f, E), p.seed);
        add_tensor(g, &tl, TN("ffn_up.weight"), E, F, f16_e, 'u', uscale(1.0f, E), p.seed);
        /* silu(gate)·up has rms ≈ 0.5, so gain 2 keeps the FFN output O(1) */
        add_tensor(g, &tl, TN("ffn_down.weight"), F, E, f16_f, 'u', uscale(2.0f, F), p.seed);
#undef TN
    }

    /* ---- write OUT.tmp.<pid>, then rename */
    int nw = snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%ld", p.output, (long)getpid());
    if (nw < 0 || (size_t)nw >= sizeof tmp_path) {
        tmp_path[0] = '\0';
        die("output path too long");
    }
    FILE *f = fopen(tmp_path, "wb");
    if (f == NULL) {
        int e = errno;
        tmp_path[0] = '\0'; /* nothing was created */
        die("cannot write output '%s': %s", p.output, strerror(e));
    }
    bool ok = gguf_write_to_file_ptr(g, f, false);
    ok = fflush(f) == 0 && ok;
    ok = ferror(f) == 0 && ok;
    int e = errno;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        die("writing '%s' failed: %s", tmp_path, ggml_last_error[0] ? ggml_last_error : strerror(e));
    }
    if (rename(tmp_path, p.output) != 0) {
        die("cannot rename '%s' to '%s': %s", tmp_path, p.output, strerror(errno));
    }
    tmp_path[0] = '\0';

    if (!p.quiet) {
        struct stat so;
        double mib = stat(p.output, &so) == 0 ? (double)so.st_size / (1024.0 * 1024.0) : 0.0;
        printf("%s: wrote %s (%s, layers %ld, embd %ld, heads %ld, kv-heads %ld, ff %ld, ctx %ld, "
               "vocab %zu, seed %" PRIu64 ", %s%s, %.1f MiB)\n",
               progname, p.output, ARCH, p.layers, p.embd, p.heads, p.kv_heads, p.ff, p.ctx,
               n_vocab, p.seed, any_f16 ? "f16+f32" : "f32",
               p.bias_newlines != 0.0 || p.bias_digits != 0.0 ? ", output.bias" : "", mib);
    }

    for (size_t i = 0; i < tl.n; i++) {
        free(tl.data[i]);
    }
    free(tl.data);
    ggml_free(tl.ctx);
    gguf_free(g);
    gguf_free(vocab);
    return 0;
}
