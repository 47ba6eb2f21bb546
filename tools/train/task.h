/*
 * task.h: the synthetic reasoning task of the trained pair, its character-level vocabulary and
 * the exact text formats the engine produces around it (chatml prompt, thinking steps, judge turn).
 *
 * A problem is a sum of n_terms numbers of `digits` digits, zero-padded to digits + 1 places (room
 * for the running total): "03+05+07+09+04". The solution adds them left to right, one step per
 * addition, steps separated by "\n\n", and ends with the answer step:
 *   "Step 1: 03+05=08"  "Step 2: 08+07=15"  "Step 3: 15+09=24"  "Step 4: 24+04=28"  "Answer: \boxed{28}"
 * The hard tokens are the sums' digits (a carry into the tens whenever the units overflow); the
 * rest is copying, which small models learn first. Difficulty: terms (steps) and digits. With
 * fixed-width numbers and a fixed number of terms every copied digit sits at a fixed distance
 * from its source, which is what lets a 2-layer model learn the task in a minute on a CPU
 * (variable widths or term counts turned the operand lookup into an induction problem that did
 * not train in the budget; multi-digit terms left the low digits of the sums at chance level
 * after 6 minutes: see docs/TRAINING.md).
 *
 * All functions are pure (the RNG state is explicit), so a seed fixes every data set.
 */
#ifndef SR_TRAIN_TASK_H
#define SR_TRAIN_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TK_MAX_TERMS 9
#define TK_MAX_DIGITS 6
#define TK_TEXT_MAX 1024 /* bytes of any single rendered step or problem */

/* ------------------------------------------------------------------------------------------ */
/* RNG (splitmix64: portable, so a seed gives the same data everywhere)                       */

uint64_t tk_rand(uint64_t *state);
/* Uniform in [0, n); n > 0. */
uint64_t tk_rand_below(uint64_t *state, uint64_t n);
/* Uniform in [0, 1). */
double tk_rand_unit(uint64_t *state);

/* ------------------------------------------------------------------------------------------ */
/* Vocabulary: ids are fixed; the table is what the GGUF stores.                              */

enum tk_token_type { TK_NORMAL = 1, TK_UNKNOWN = 2, TK_CONTROL = 3, TK_USER_DEFINED = 4, TK_BYTE = 6 };

enum {
    TK_UNK = 0,
    TK_BOS = 1,      /* "<s>", never added (add_bos_token = false) */
    TK_EOS = 2,      /* "</s>" */
    TK_IM_START = 3, /* "<|im_start|>" */
    TK_IM_END = 4,   /* "<|im_end|>": end of turn, the EOG/eos/eot token */
    TK_THINK = 5,    /* "<think>" */
    TK_THINK_END = 6,
    TK_USER = 7,      /* "user" (user-defined: one token wherever it appears) */
    TK_ASSISTANT = 8, /* "assistant" */
    TK_DELIM = 9,     /* "\n\n": the step delimiter */
    TK_BOXED = 10,    /* "\boxed{" */
    TK_NEWLINE = 11,  /* "\n" */
    TK_SPACE = 12,    /* U+2581, SentencePiece's space */
    TK_FIRST_ASCII = 13, /* then '!' .. '~' (94 tokens) */
    /* then the byte tokens <0x00> .. <0xFF>: SentencePiece's fallback for any other character
     * (without them llama.cpp's tokenizer throws on a non-ASCII byte and aborts the engine) */
    TK_FIRST_BYTE = TK_FIRST_ASCII + 94,
    TK_N_VOCAB = TK_FIRST_BYTE + 256,
};

/* Text (as stored in the GGUF) and type of token id; NULL for an id out of range. */
const char *tk_token_text(int32_t id);
enum tk_token_type tk_token_type(int32_t id);
/* The piece a token stands for in plain text (U+2581 -> ' '); "" for control tokens. */
const char *tk_token_piece(int32_t id);

/* Tokenizes like llama.cpp does with parse_special = true, add_special = false for this
 * vocabulary: control and user-defined strings first (longest first), then one token per
 * character (' ' -> U+2581, printable ASCII and '\n' -> themselves, any other byte -> its byte
 * token).
 * Writes at most cap ids; returns the number of tokens (which may exceed cap). */
int32_t tk_tokenize(const char *text, size_t len, int32_t *out, int32_t cap);

/* Digit d (0-9) as a token id. */
int32_t tk_digit_token(int d);

/* ------------------------------------------------------------------------------------------ */
/* Problems                                                                                   */

struct tk_cfg {
    int32_t terms_min, terms_max; /* numbers per problem, 2..TK_MAX_TERMS */
    int32_t digits;               /* digits per number, 1..TK_MAX_DIGITS; numbers are < 10^digits */
};

struct tk_problem {
    int32_t n_terms;
    int32_t width; /* digits written per number (digits + 1: room for the sums) */
    int64_t term[TK_MAX_TERMS];
};

/* The default task ("terms 5-5, digits 1"). */
struct tk_cfg tk_cfg_default(void);
/* NULL if valid, else a static message naming the bad field. */
const char *tk_cfg_check(const struct tk_cfg *cfg);
/* Stable text naming the task (goes into the cache key): "add-t3-4-d3". */
void tk_cfg_name(const struct tk_cfg *cfg, char *buf, size_t size);

void tk_problem_gen(const struct tk_cfg *cfg, uint64_t *rng, struct tk_problem *out);
/* Steps of the solution: n_terms - 1 additions and the \boxed step. */
int32_t tk_n_steps(const struct tk_problem *p);
int64_t tk_answer(const struct tk_problem *p);
/* Running total after step k (k < n_terms - 1): term[0] + ... + term[k + 1]. */
int64_t tk_total(const struct tk_problem *p, int32_t k);

/* Text writers; each returns the length (snprintf semantics, NUL-terminated). */
int tk_problem_text(const struct tk_problem *p, char *buf, size_t size);
int tk_step_text(const struct tk_problem *p, int32_t k, char *buf, size_t size);
/* A wrong version of step k (different text, same format family): off-by-one digit, wrong carry,
 * miscopied operand or previous total, premature or wrong \boxed. Never equals the right step. */
int tk_step_corrupt(const struct tk_problem *p, int32_t k, uint64_t *rng, char *buf, size_t size);
/* A near miss of step k: its result (the sum, or the boxed answer) off by one in the last digit,
 * the small model's most common real mistake and the hardest one to see. */
int tk_step_near_miss(const struct tk_problem *p, int32_t k, uint64_t *rng, char *buf, size_t size);
/* Parses "0357+0067+0890+0012" back into a problem (for evaluation); false if malformed. */
bool tk_problem_parse(const char *text, struct tk_problem *out);
/* The integer inside the last "\boxed{...}" of text; false if none or not a number. */
bool tk_boxed_value(const char *text, int64_t *out);

/* ------------------------------------------------------------------------------------------ */
/* The chat format (llama.cpp's built-in chatml, which the engine uses for this vocabulary)    */

#define TK_CHAT_TEMPLATE                                                                          \
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] " \
    "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' " \
    "}}{% endif %}"
#define TK_THINK_OPEN "<think>\n"
#define TK_DELIM_TEXT "\n\n"
/* The judge strings this pair is trained with (pass them with --judge-prompt/--judge-prefill). */
#define TK_JUDGE_PROMPT "Right?" /* short: the judge call prefills candidate + 16 tokens */
#define TK_JUDGE_PREFILL ""
#define TK_SCORE_GOOD 9
#define TK_SCORE_BAD 0

/* "<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n<think>\n": what the engine
 * prefills with --template raw (user message = the problem). */
int tk_render_prefix(const char *problem, char *buf, size_t size);
/* What the engine puts after "candidate\n\n": closes the assistant turn, the judge's user turn,
 * an assistant turn and the prefill. */
int tk_render_judge_suffix(const char *judge_prompt, const char *judge_prefill, char *buf, size_t size);

#endif
