/*
 * The C ABI tested from C, against the committed header and the built library, on a real model.
 *
 *   deepedge_test MODEL.gguf PATH/TO/deepedge [N_TOKENS] [--quick]
 *
 * The expected text comes from the real `deepedge run` binary, run here as a child process with the same
 * arguments, never from a string written into this file. Checks: version, load failures, greedy and
 * seeded-sampling text equal to `deepedge run`, streaming equal to the whole text, a callback that stops
 * early, cancellation from another thread, two threads with their own handles equal to one, sessions,
 * tokenize/detokenize, misuse (NULL, freed handles, double frees) and that nothing is left allocated.
 * --quick (for valgrind, where a forward pass is ~100x slower) runs every kind of check once, on one
 * prompt, with as few generations as that allows. bindings/c/run-tests.sh builds the program and runs it,
 * natively and under valgrind.
 */
#define _POSIX_C_SOURCE 200809L
#include "deepedge.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (cond) {                                                                               \
            passed++;                                                                             \
        } else {                                                                                  \
            failed++;                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

static const char *model_path, *cli_path;
static unsigned n_tokens = 16;
static bool quick;

static const char *PROMPTS[] = {"The capital of France is", "def fibonacci(n):\n    "};
#define N_PROMPTS (sizeof PROMPTS / sizeof PROMPTS[0])
/* Greedy texts of PROMPTS from the main handle, for the thread test. */
static char *greedy[N_PROMPTS];

/* ------------------------------------------------------------------------------------------------ */
/* The reference: `deepedge run`, as a child process. */

/* Runs `deepedge run -m MODEL -p PROMPT -n N --temp T --seed S` and returns its stdout without the final
 * newline the CLI prints after the text (malloc'd), or NULL when it fails. */
static char *deepedge_run(const char *prompt, unsigned n, const char *temp, const char *seed) {
    char n_text[16];
    snprintf(n_text, sizeof n_text, "%u", n);
    int fds[2];
    if (pipe(fds) != 0) return NULL;
    pid_t pid = fork();
    if (pid < 0) return NULL;
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDERR_FILENO);
        char *argv[] = {(char *)cli_path, "run", "-m", (char *)model_path, "-p", (char *)prompt, "-n",
                        n_text, "--temp", (char *)temp, "--seed", (char *)seed, NULL};
        execv(cli_path, argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    for (;;) {
        if (len + 1024 > cap) out = realloc(out, cap *= 2);
        ssize_t got = read(fds[0], out + len, cap - len - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || len == 0 || out[len - 1] != '\n') {
        fprintf(stderr, "deepedge run failed (status %d) for %s\n", status, prompt);
        free(out);
        return NULL;
    }
    out[len - 1] = '\0';
    return out;
}

/* ------------------------------------------------------------------------------------------------ */
/* Callbacks. */

typedef struct {
    char text[1 << 16];
    size_t len;
    int pieces;
    int stop_after; /* return false after this many pieces; 0 = never */
} Collector;

static bool collect(const char *piece, void *user_data) {
    Collector *c = user_data;
    size_t n = strlen(piece);
    if (c->len + n < sizeof c->text) {
        memcpy(c->text + c->len, piece, n + 1);
        c->len += n;
    }
    c->pieces++;
    return c->stop_after == 0 || c->pieces < c->stop_after;
}

/* Cancellation from another thread: the first piece wakes the canceller thread and waits until it has
 * raised the flag, so the generation must stop right after this piece. */
typedef struct {
    DeepedgeCancel *cancel;
    atomic_int started;
    int pieces;
} CancelState;

static bool wait_for_cancel(const char *piece, void *user_data) {
    (void)piece;
    CancelState *st = user_data;
    st->pieces++;
    atomic_store(&st->started, 1);
    for (int i = 0; i < 30000 && !deepedge_cancel_is_requested(st->cancel); i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return true;
}

static void *canceller(void *arg) {
    CancelState *st = arg;
    while (!atomic_load(&st->started)) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    deepedge_cancel_request(st->cancel);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* Two threads, each with its own handle. */

typedef struct {
    const char *prompt;
    char *text;
    char *error;
} ThreadJob;

static void *generate_on_own_handle(void *arg) {
    ThreadJob *job = arg;
    DeepedgeModel *m = deepedge_model_load(model_path, &job->error);
    if (!m) return NULL;
    job->text = deepedge_generate(m, job->prompt, n_tokens, 0.0f, 0, &job->error);
    deepedge_model_free(m);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ */

static void test_version(void) {
    CHECK(strcmp(deepedge_version(), DEEPEDGE_VERSION) == 0, "%s vs %s", deepedge_version(),
          DEEPEDGE_VERSION);
    char numbers[64];
    snprintf(numbers, sizeof numbers, "%d.%d.%d", DEEPEDGE_VERSION_MAJOR, DEEPEDGE_VERSION_MINOR,
             DEEPEDGE_VERSION_PATCH);
    CHECK(strcmp(numbers, DEEPEDGE_VERSION) == 0, "%s", numbers);
    CHECK(deepedge_abi_version() == DEEPEDGE_ABI_VERSION, "%u", deepedge_abi_version());
}

static void test_load_failures(void) {
    char *err = NULL;
    DeepedgeModel *m = deepedge_model_load("/nonexistent/dir/model.gguf", &err);
    CHECK(m == NULL, "missing file loaded");
    CHECK(err && strstr(err, "/nonexistent/dir/model.gguf"), "message: %s", err ? err : "(none)");
    deepedge_string_free(err);

    char garbage[] = "/tmp/deepedge-garbage-XXXXXX";
    int fd = mkstemp(garbage);
    CHECK(fd >= 0, "mkstemp");
    for (int i = 0; i < 4096; i++) {
        unsigned char byte = (unsigned char)(i * 131 + 7);
        if (write(fd, &byte, 1) != 1) break;
    }
    close(fd);
    err = NULL;
    m = deepedge_model_load(garbage, &err);
    CHECK(m == NULL, "garbage file loaded");
    CHECK(err && strstr(err, garbage), "message: %s", err ? err : "(none)");
    deepedge_string_free(err);
    unlink(garbage);

    err = NULL;
    CHECK(deepedge_model_load(NULL, &err) == NULL && err != NULL, "NULL path");
    deepedge_string_free(err);
    CHECK(deepedge_model_load("/nonexistent", NULL) == NULL, "NULL error_out is allowed");
}

static void test_generation(DeepedgeModel *m) {
    for (size_t i = 0; i < (quick ? 1 : N_PROMPTS); i++) {
        const char *prompt = PROMPTS[i];
        char *expected = deepedge_run(prompt, n_tokens, "0", "0");
        CHECK(expected != NULL, "deepedge run for %s", prompt);
        if (!expected) continue;

        char *err = NULL;
        char *text = deepedge_generate(m, prompt, n_tokens, 0.0f, 0, &err);
        CHECK(text != NULL && err == NULL, "generate: %s", err ? err : "");
        CHECK(text && strcmp(text, expected) == 0, "greedy text differs from deepedge run:\n%s\n---\n%s",
              text ? text : "", expected);
        CHECK(text && strlen(text) > 0, "empty text for %s", prompt);

        Collector *c = calloc(1, sizeof *c);
        int rc = deepedge_generate_stream(m, prompt, n_tokens, 0.0f, 0, collect, c, &err);
        CHECK(rc == DEEPEDGE_OK, "stream rc %d: %s", rc, err ? err : "");
        CHECK(text && strcmp(c->text, text) == 0, "streamed text differs:\n%s\n---\n%s", c->text,
              text ? text : "");
        CHECK(c->pieces >= 2, "only %d pieces", c->pieces);
        int all_pieces = c->pieces;

        /* A callback that returns false after two pieces stops there; that is not an error. */
        memset(c, 0, sizeof *c);
        c->stop_after = 2;
        rc = deepedge_generate_stream(m, prompt, n_tokens, 0.0f, 0, collect, c, &err);
        CHECK(rc == DEEPEDGE_OK, "early stop rc %d", rc);
        CHECK(c->pieces == 2 && all_pieces > 2, "stopped after %d of %d pieces", c->pieces, all_pieces);
        CHECK(text && strncmp(text, c->text, c->len) == 0 && c->len < strlen(text),
              "early text is not a proper prefix: %s", c->text);

        greedy[i] = text;
        free(c);
        free(expected);
        if (quick) continue;

        /* The same through the general entry point, with info. */
        DeepedgeGenerateParams p = deepedge_generate_params_default();
        p.max_tokens = n_tokens;
        p.temperature = 0.0f;
        char *text2 = NULL;
        DeepedgeGenerationInfo info;
        rc = deepedge_generate_with_params(m, prompt, &p, NULL, NULL, &text2, &info, &err);
        CHECK(rc == DEEPEDGE_OK && text2 && text && strcmp(text2, text) == 0, "with_params text");
        CHECK(info.n_prompt_tokens > 0 && info.n_generated_tokens > 0 &&
                  info.n_generated_tokens <= n_tokens,
              "info: %u prompt, %u generated", info.n_prompt_tokens, info.n_generated_tokens);
        CHECK(info.finish_reason == DEEPEDGE_FINISH_REASON_LENGTH ||
                  info.finish_reason == DEEPEDGE_FINISH_REASON_EOS,
              "finish %d", (int)info.finish_reason);
        deepedge_string_free(text2);
    }

    /* Errors as values: a prompt that cannot fit, bad sampling parameters (nothing is generated). */
    char *err = NULL;
    char *text = deepedge_generate(m, PROMPTS[0], 1u << 30, 0.0f, 0, &err);
    CHECK(text == NULL && err && strstr(err, "does not fit"), "overflow: %s", err ? err : "");
    deepedge_string_free(err);
    err = NULL;
    int rc = deepedge_generate_stream(m, PROMPTS[0], 4, -1.0f, 0, NULL, NULL, &err);
    CHECK(rc == DEEPEDGE_ERROR_INVALID_ARGUMENT && err && strstr(err, "temperature"), "rc %d", rc);
    deepedge_string_free(err);
    err = NULL;
    rc = deepedge_generate_stream(m, NULL, 4, 0.0f, 0, NULL, NULL, &err);
    CHECK(rc == DEEPEDGE_ERROR_INVALID_ARGUMENT && err && strstr(err, "prompt is NULL"), "rc %d", rc);
    deepedge_string_free(err);
    if (quick) return;

    /* Seeded sampling with llama.cpp's default chain equals `deepedge run --temp 0.8 --seed 42`. */
    char *expected = deepedge_run(PROMPTS[0], n_tokens, "0.8", "42");
    text = deepedge_generate(m, PROMPTS[0], n_tokens, 0.8f, 42, &err);
    CHECK(expected && text && strcmp(text, expected) == 0, "sampled text differs:\n%s\n---\n%s",
          text ? text : "", expected ? expected : "");
    deepedge_string_free(text);
    free(expected);
}

/* The greedy text of the prompt the stop and cancel tests use. */
static const char *stop_cancel_prompt(const char **full) {
    size_t i = quick ? 0 : 1;
    *full = greedy[i];
    return PROMPTS[i];
}

static void test_stop(DeepedgeModel *m) {
    const char *full, *prompt = stop_cancel_prompt(&full);
    CHECK(full != NULL, "no greedy text for %s", prompt);
    if (!full) return;
    /* A stop string cut from the middle of the greedy text ends it right before. */
    char stop[8] = {0};
    strncpy(stop, full + strlen(full) / 2, 3);
    const char *stops[] = {stop};
    DeepedgeGenerateParams p = deepedge_generate_params_default();
    p.max_tokens = n_tokens;
    p.temperature = 0.0f;
    p.stop = stops;
    p.n_stop = 1;
    char *text = NULL, *err = NULL;
    DeepedgeGenerationInfo info;
    int rc = deepedge_generate_with_params(m, prompt, &p, NULL, NULL, &text, &info, &err);
    const char *at = strstr(full, stop);
    CHECK(rc == DEEPEDGE_OK && text && at && strlen(text) == (size_t)(at - full) &&
              strncmp(text, full, strlen(text)) == 0,
          "stop %s: %s", stop, text ? text : "");
    CHECK(info.finish_reason == DEEPEDGE_FINISH_REASON_STOP, "finish %d", (int)info.finish_reason);
    deepedge_string_free(text);
}

static void test_cancel(DeepedgeModel *m) {
    const char *full, *prompt = stop_cancel_prompt(&full);
    CHECK(full != NULL, "no greedy text for %s", prompt);
    if (!full) return;
    /* Cancellation from another thread stops after the piece during which it was raised. */
    CancelState st = {.cancel = deepedge_cancel_new(), .started = 0, .pieces = 0};
    pthread_t t;
    pthread_create(&t, NULL, canceller, &st);
    DeepedgeGenerateParams p = deepedge_generate_params_default();
    p.max_tokens = n_tokens;
    p.temperature = 0.0f;
    p.cancel = st.cancel;
    char *text = NULL, *err = NULL;
    DeepedgeGenerationInfo info;
    int rc = deepedge_generate_with_params(m, prompt, &p, wait_for_cancel, &st, &text, &info, &err);
    pthread_join(t, NULL);
    CHECK(rc == DEEPEDGE_OK, "cancelled rc %d: %s", rc, err ? err : "");
    CHECK(info.finish_reason == DEEPEDGE_FINISH_REASON_CANCELLED, "finish %d", (int)info.finish_reason);
    CHECK(st.pieces == 1 && info.n_generated_tokens < n_tokens, "%d pieces, %u tokens", st.pieces,
          info.n_generated_tokens);
    CHECK(text && strncmp(full, text, strlen(text)) == 0, "cancelled text is not a prefix");
    deepedge_string_free(text);

    if (!quick) {
        /* The same handle raised before the start stops before the first token; reset re-arms it. */
        text = NULL;
        rc = deepedge_generate_with_params(m, prompt, &p, NULL, NULL, &text, &info, &err);
        CHECK(rc == DEEPEDGE_OK && info.n_generated_tokens == 0 && text && text[0] == '\0',
              "pre-cancelled: %u tokens", info.n_generated_tokens);
        deepedge_string_free(text);
        deepedge_cancel_reset(st.cancel);
        text = NULL;
        rc = deepedge_generate_with_params(m, prompt, &p, NULL, NULL, &text, &info, &err);
        CHECK(rc == DEEPEDGE_OK && text && strcmp(text, full) == 0, "after reset");
        deepedge_string_free(text);
    }
    deepedge_cancel_free(st.cancel);
}

static void test_threads(void) {
    ThreadJob jobs[N_PROMPTS] = {{0}};
    pthread_t threads[N_PROMPTS];
    for (size_t i = 0; i < N_PROMPTS; i++) {
        jobs[i].prompt = PROMPTS[quick ? 0 : i];
        pthread_create(&threads[i], NULL, generate_on_own_handle, &jobs[i]);
    }
    for (size_t i = 0; i < N_PROMPTS; i++) {
        pthread_join(threads[i], NULL);
        const char *one = greedy[quick ? 0 : i];
        CHECK(jobs[i].text && one && strcmp(jobs[i].text, one) == 0, "thread %zu: %s vs %s (%s)", i,
              jobs[i].text ? jobs[i].text : "", one ? one : "", jobs[i].error ? jobs[i].error : "");
        deepedge_string_free(jobs[i].text);
        deepedge_string_free(jobs[i].error);
    }
}

static void test_session(DeepedgeModel *m) {
    char *err = NULL;
    DeepedgeSession *s = deepedge_session_new(m, "You answer in one short sentence.", &err);
    CHECK(s != NULL, "session: %s", err ? err : "");
    if (!s) return;
    DeepedgeGenerateParams p = deepedge_generate_params_default();
    p.max_tokens = n_tokens;
    p.temperature = 0.0f;
    Collector *c = calloc(1, sizeof *c);
    char *reply = NULL;
    DeepedgeGenerationInfo info;
    int rc = deepedge_session_send(s, "What is the capital of France?", &p, collect, c, &reply, &info, &err);
    CHECK(rc == DEEPEDGE_OK && reply && strcmp(reply, c->text) == 0 && info.n_generated_tokens > 0,
          "first turn rc %d: %s", rc, err ? err : "");
    unsigned after_first = deepedge_session_n_tokens(s);
    CHECK(after_first >= info.n_prompt_tokens, "%u tokens cached", after_first);
    deepedge_string_free(reply);

    if (!quick) {
        /* The second turn re-sends the conversation; only the new part is computed. */
        reply = NULL;
        rc = deepedge_session_send(s, "And of Italy?", &p, NULL, NULL, &reply, &info, &err);
        CHECK(rc == DEEPEDGE_OK && reply, "second turn rc %d", rc);
        CHECK(info.n_prefill_tokens < info.n_prompt_tokens && info.n_prompt_tokens > after_first / 2,
              "prefill %u of %u", info.n_prefill_tokens, info.n_prompt_tokens);
        deepedge_string_free(reply);
    }

    deepedge_session_reset(s);
    CHECK(deepedge_session_n_tokens(s) == 0, "after reset %u", deepedge_session_n_tokens(s));
    rc = deepedge_session_send(s, NULL, &p, NULL, NULL, NULL, NULL, &err);
    CHECK(rc == DEEPEDGE_ERROR_INVALID_ARGUMENT && err, "NULL message");
    deepedge_string_free(err);
    free(c);
    deepedge_session_free(s);
    deepedge_session_free(s); /* double free is ignored */
    err = NULL;
    rc = deepedge_session_send(s, "hi", &p, NULL, NULL, NULL, NULL, &err);
    CHECK(rc == DEEPEDGE_ERROR_INVALID_ARGUMENT && err && strstr(err, "not a live"), "use after free");
    deepedge_string_free(err);
}

static void test_tokens(DeepedgeModel *m) {
    char *err = NULL;
    uint32_t *ids = NULL;
    size_t n = 0;
    const char *text = "Hello, world! 你好 <|im_start|>";
    int rc = deepedge_tokenize(m, text, false, false, &ids, &n, &err);
    CHECK(rc == DEEPEDGE_OK && ids && n > 3, "tokenize rc %d", rc);
    char *back = deepedge_detokenize(m, ids, n, false, &err);
    CHECK(back && strcmp(back, text) == 0, "round trip: %s", back ? back : "");
    deepedge_string_free(back);
    uint32_t bad = deepedge_model_n_vocab(m);
    back = deepedge_detokenize(m, &bad, 1, false, &err);
    CHECK(back == NULL && err && strstr(err, "outside the vocabulary"), "bad id");
    deepedge_string_free(err);
    deepedge_tokens_free(ids);
    deepedge_tokens_free(ids);
    CHECK(deepedge_model_n_ctx(m) > 0 && deepedge_model_n_vocab(m) > 1000, "n_ctx/n_vocab");
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PATH/TO/deepedge [N_TOKENS]\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    cli_path = argv[2];
    if (argc > 3) n_tokens = (unsigned)atoi(argv[3]);
    quick = argc > 4 && strcmp(argv[4], "--quick") == 0;

    test_version();
    test_load_failures();
    char *err = NULL;
    DeepedgeModel *m = deepedge_model_load(model_path, &err);
    CHECK(m != NULL, "load %s: %s", model_path, err ? err : "");
    if (m) {
        test_generation(m);
        if (!quick) test_stop(m);
        test_cancel(m);
        test_threads();
        test_session(m);
        test_tokens(m);
        for (size_t i = 0; i < N_PROMPTS; i++) deepedge_string_free(greedy[i]);
        deepedge_model_free(m);
        deepedge_model_free(m); /* double free is ignored */
        err = NULL;
        char *text = deepedge_generate(m, "x", 1, 0.0f, 0, &err);
        CHECK(text == NULL && err && strstr(err, "not a live"), "use after free");
        deepedge_string_free(err);
    }
    CHECK(deepedge_live_objects() == 0, "%zu objects left", deepedge_live_objects());
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
