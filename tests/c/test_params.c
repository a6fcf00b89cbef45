/* test_params.c: typed INI parameters (src/params.c): defaults, spellings, lists, ranges, sweeps'
 * pick, and every rejected value exiting 2 with its file:line message (checked in a child). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "lpe/params.h"

static const lpe_param_spec spec[] = {
    {"budget", LPE_P_INT, NULL, 1, 1e15, 0, "model calls per target"},
    {"temperature", LPE_P_DOUBLE, "1.0", 1e-6, 1e6, 1, "temperature(s)"},
    {"decay", LPE_P_DOUBLE, "0.9", 0, 1, 0, "score decay"},
    {"variant", LPE_P_STRING, "paper", 1, 0, 0, "paper or arc"},
    {"chains", LPE_P_BOOL, "false", 1, 0, 0, "write chains"},
    {"walkers", LPE_P_INT, "32", 1, 1e9, 1, "walkers"},
    {NULL},
};

/* Run fn in a child with stderr captured; returns exit status, message in msg. */
static int child(void (*fn)(void *), void *arg, char *msg, size_t n) {
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        fn(arg);
        _exit(0);
    }
    close(fd[1]);
    size_t w = 0;
    ssize_t r;
    while (w + 1 < n && (r = read(fd[0], msg + w, n - 1 - w)) > 0) w += (size_t)r;
    msg[w] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct { const char *key, *value; } kv;
static void set_one(void *arg) {
    const kv *x = arg;
    lpe_params p;
    lpe_params_init(&p, spec, "exp.ini", "method itgis");
    lpe_params_set(&p, x->key, x->value, 7);
    lpe_params_check_complete(&p);
}
static void set_twice(void *arg) {
    (void)arg;
    lpe_params p;
    lpe_params_init(&p, spec, "exp.ini", "method itgis");
    lpe_params_set(&p, "budget", "10", 3);
    lpe_params_set(&p, "budget", "11", 4);
}
static void missing(void *arg) {
    (void)arg;
    lpe_params p;
    lpe_params_init(&p, spec, "exp.ini", "method itgis");
    lpe_params_check_complete(&p);
}

static void expect_fail(const char *key, const char *value, const char *fragment) {
    char msg[2048];
    kv x = {key, value};
    int rc = child(set_one, &x, msg, sizeof msg);
    CHECK(rc == 2, "%s = %s: exit %d", key, value, rc);
    CHECK(strstr(msg, fragment) != NULL, "%s = %s: message '%s' lacks '%s'", key, value, msg, fragment);
    CHECK(strstr(msg, "exp.ini:7:") != NULL, "no file:line in '%s'", msg);
}

int main(void) {
    lpe_params p;
    lpe_params_init(&p, spec, "exp.ini", "method itgis");
    /* defaults */
    CHECK(!lpe_param_is_set(&p, "budget"), "budget has no default");
    CHECK_CLOSE(lpe_param_double(&p, "temperature"), 1.0, 0, 0);
    CHECK(strcmp(lpe_param_str(&p, "variant"), "paper") == 0, "variant default");
    CHECK(lpe_param_bool(&p, "chains") == 0, "chains default");
    CHECK(lpe_param_int(&p, "walkers") == 32, "walkers default");
    CHECK(lpe_param_line(&p, "walkers") == 0, "defaults have line 0");
    /* spellings */
    lpe_params_set(&p, "budget", " 2^16 ", 3);
    CHECK(lpe_param_int(&p, "budget") == 65536, "2^16 -> %lld", lpe_param_int(&p, "budget"));
    CHECK(lpe_param_line(&p, "budget") == 3, "line kept");
    lpe_params_set(&p, "chains", "Yes", 4);
    CHECK(lpe_param_bool(&p, "chains") == 1, "Yes is true");
    lpe_params_set(&p, "walkers", "1e3", 5);
    CHECK(lpe_param_int(&p, "walkers") == 1000, "1e3 integral");
    lpe_params_set(&p, "variant", "  arc ", 6);
    CHECK(strcmp(lpe_param_str(&p, "variant"), "arc") == 0, "trimmed string");
    /* lists and the sweep pick */
    lpe_params_set(&p, "temperature", "0.45, 0.67,1.0 ,1.5", 8);
    CHECK(lpe_param_count(&p, "temperature") == 4, "list of 4");
    CHECK_CLOSE(lpe_param_list(&p, "temperature", 1), 0.67, 0, 0);
    char buf[64];
    CHECK(strcmp(lpe_param_text(&p, "temperature", 2, buf, sizeof buf), "1.0") == 0, "text '%s'", buf);
    lpe_params_pick(&p, "temperature", 2);
    CHECK(lpe_param_count(&p, "temperature") == 1, "picked one");
    CHECK_CLOSE(lpe_param_double(&p, "temperature"), 1.0, 0, 0);
    CHECK(strcmp(lpe_param_text(&p, "temperature", 0, buf, sizeof buf), "1.0") == 0, "picked text '%s'", buf);
    lpe_params_check_complete(&p);
    /* added specs (the runner's common budget key) */
    static const lpe_param_spec extra[] = {{"note", LPE_P_STRING, "", 1, 0, 0, "free text"}, {NULL}};
    lpe_params_add_spec(&p, extra);
    lpe_params_set(&p, "note", "hello, world", 9);
    CHECK(strcmp(lpe_param_str(&p, "note"), "hello, world") == 0, "a non-list string keeps commas");
    /* a list string is a sweep over its items */
    static const lpe_param_spec slist[] = {{"variant", LPE_P_STRING, "paper", 1, 0, 1, "v"}, {NULL}};
    lpe_params q;
    lpe_params_init(&q, slist, "t.ini", "method qld");
    lpe_params_set(&q, "variant", "paper, arc", 4);
    CHECK(lpe_param_count(&q, "variant") == 2, "string list count %d", lpe_param_count(&q, "variant"));
    CHECK(!strcmp(lpe_param_text(&q, "variant", 1, buf, sizeof buf), "arc"), "item '%s'", buf);
    lpe_params_pick(&q, "variant", 1);
    CHECK(!strcmp(lpe_param_str(&q, "variant"), "arc"), "picked '%s'", lpe_param_str(&q, "variant"));

    /* rejected values: exit 2 with file:line and what was wrong */
    expect_fail("budgit", "10", "unknown key 'budgit'");
    expect_fail("budget", "12x", "expected an integer");
    expect_fail("budget", "-5", "out of range");
    expect_fail("budget", "1.5", "expected an integer");
    expect_fail("budget", "", "empty value");
    expect_fail("decay", "1.5", "out of range");
    expect_fail("decay", "nan", "expected a number");
    expect_fail("decay", "0.5, 0.6", "takes one value");
    expect_fail("temperature", "0.5,,1", "empty value");
    expect_fail("chains", "maybe", "expected true or false");
    char msg[2048];
    CHECK(child(set_twice, NULL, msg, sizeof msg) == 2 && strstr(msg, "set twice (first at line 3)"),
          "duplicate key: '%s'", msg);
    CHECK(child(missing, NULL, msg, sizeof msg) == 2 && strstr(msg, "required key 'budget'"),
          "missing required: '%s'", msg);
    return check_summary("test_params");
}
