/* Test harness for the C API: a devhub process on ephemeral ports, its CLI, and tiny check
 * macros. Every wait has a deadline so a broken build fails instead of hanging. */
#ifndef EM_TEST_HARNESS_H
#define EM_TEST_HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "edgemodule.h"

typedef struct {
  pid_t pid;
  char dir[256];       /* temporary directory: state/, ready.json, devhub.log */
  char state[300];
  char devhub[512];    /* devhub binary */
  int mqtt_port;
  int https_port;
  char *ca_pem;        /* CA certificate (PEM) to trust */
  char device_id[128];
} hub_t;

/* Starts devhub with `manifest` (a file path); fails the test on error. */
void hub_start(hub_t *hub, const char *manifest);
/* Stops devhub (SIGTERM, then SIGKILL after 5 s) and removes its directory. */
void hub_stop(hub_t *hub);
/* `devhub connection-string MODULE`; caller frees. */
char *hub_connection_string(hub_t *hub, const char *module);
/* Runs `devhub --state-dir S ARGS` and returns its stdout (caller frees) or NULL on failure. */
char *hub_cli(hub_t *hub, const char *args);
/* Options for `hub`: ports and CA set, shorter timeouts for tests. */
void hub_options(hub_t *hub, em_client_options *options);
/* A connected client for `module`. */
em_client *hub_client(hub_t *hub, const char *module);

/* Milliseconds on a monotonic clock. */
long long now_ms(void);
void sleep_ms(int ms);

/* A counter + condition variable, for waiting on callbacks. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int count;
} counter_t;
void counter_init(counter_t *c);
void counter_add(counter_t *c, int n);
int counter_get(counter_t *c);
/* Waits until count >= target or `ms` elapsed; returns the count. */
int counter_wait(counter_t *c, int target, int ms);
void counter_destroy(counter_t *c);

/* Test bookkeeping. */
extern int g_failures;
extern int g_checks;
#define CHECK(cond)                                                                   \
  do {                                                                                \
    g_checks++;                                                                       \
    if (!(cond)) {                                                                    \
      g_failures++;                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
    }                                                                                 \
  } while (0)
/* Checks that `expr` (an em_error*) is NULL; prints and frees the error otherwise. */
#define CHECK_OK(expr)                                                                \
  do {                                                                                \
    em_error *check_ok_e_ = (expr);                                                   \
    g_checks++;                                                                       \
    if (check_ok_e_) {                                                                \
      g_failures++;                                                                   \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr,        \
              em_error_kind_name(em_error_kind(check_ok_e_)),                         \
              em_error_message(check_ok_e_));                                         \
      em_error_free(check_ok_e_);                                                     \
    }                                                                                 \
  } while (0)
/* Checks that `expr` fails with `kind`; frees the error. */
#define CHECK_ERR(expr, kind)                                                         \
  do {                                                                                \
    em_error *check_err_e_ = (expr);                                                  \
    g_checks++;                                                                       \
    if (em_error_kind(check_err_e_) != (kind)) {                                      \
      g_failures++;                                                                   \
      fprintf(stderr, "%s:%d: %s: expected %s, got %s (%s)\n", __FILE__, __LINE__,    \
              #expr, em_error_kind_name(kind),                                        \
              em_error_kind_name(em_error_kind(check_err_e_)),                        \
              check_err_e_ ? em_error_message(check_err_e_) : "success");             \
    }                                                                                 \
    em_error_free(check_err_e_);                                                      \
  } while (0)
/* Stops the test at once (setup failures). */
#define REQUIRE(cond)                                                                 \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);      \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

/* Prints "N passed, M failed" and returns the exit code. */
int test_summary(const char *name);

/* Reads a whole file (caller frees) or NULL. */
char *read_file(const char *path);
/* Path of the test manifest (EM_TEST_MANIFEST or next to the sources). */
const char *test_manifest(void);

#endif
