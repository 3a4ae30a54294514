/* Test harness for the C API: a devhub process on ephemeral ports, its CLI, a mosquitto, and
 * tiny check macros. Every wait has a deadline so a broken build fails instead of hanging.
 *
 * Two backends, chosen at run time:
 * - local (the default on POSIX): devhub and mosquitto are fork/exec'ed here, the CLI runs
 *   through popen;
 * - hostctl (env EM_HOSTCTL=127.0.0.1:PORT, the only one on Windows): cross/hostctl.py on the
 *   host runs devhub, its CLI and mosquitto natively and answers over plain HTTP on loopback
 *   (cross/run.sh starts it; the tests run under wine and reach devhub over the shared
 *   network). */
#ifndef EM_TEST_HARNESS_H
#define EM_TEST_HARNESS_H

#ifdef _WIN32
/* C99 printf formats (%lld, %zu) with mingw's msvcrt. */
#ifndef __USE_MINGW_ANSI_STDIO
#define __USE_MINGW_ANSI_STDIO 1
#endif
#endif

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgemodule.h"

#ifdef _WIN32
/* POSIX environment calls over the CRT's, which also update the process environment block
 * (what the library reads through GetEnvironmentVariableW). */
static inline int setenv(const char *name, const char *value, int overwrite) {
  if (!overwrite && getenv(name)) return 0;
  return _putenv_s(name, value) == 0 ? 0 : -1;
}
static inline int unsetenv(const char *name) { return _putenv_s(name, "") == 0 ? 0 : -1; }
#endif

typedef struct {
  long pid;            /* local: devhub's process id */
  char ctl_id[64];     /* hostctl: the hub's id */
  char dir[256];       /* local: temporary directory: state/, ready.json, devhub.log */
  char state[300];     /* devhub's state directory (on the host for hostctl) */
  char devhub[512];    /* local: devhub binary */
  int mqtt_port;
  int https_port;
  char *ca_pem;        /* CA certificate (PEM) to trust */
  char device_id[128];
  char workload_http[64]; /* hostctl: 127.0.0.1:PORT forwarded to the Workload API socket */
} hub_t;

/* Starts devhub with `manifest` (a file path); fails the test on error. */
void hub_start(hub_t *hub, const char *manifest);
/* Stops devhub (SIGTERM, then SIGKILL after 5 s) and removes its directory. */
void hub_stop(hub_t *hub);
/* `devhub connection-string MODULE`; caller frees. */
char *hub_connection_string(hub_t *hub, const char *module);
/* Runs `devhub --state-dir S ARGS` (ARGS quoted as for a POSIX shell) and returns its stdout
 * (caller frees) or NULL on failure. */
char *hub_cli(hub_t *hub, const char *args);
/* Applies `devhub env MODULE` (IOTEDGE_* variables, EdgeHubConnectionString, CA file) to this
 * process's environment; returns how many variables were set. With hostctl on Windows the
 * Workload URI is hostctl's TCP forward (http://, as IoT Edge on Windows) and the CA path is
 * the wine view of the host path. */
int hub_export_env(hub_t *hub, const char *module);
/* Options for `hub`: ports and CA set, shorter timeouts for tests. */
void hub_options(hub_t *hub, em_client_options *options);
/* A connected client for `module`. */
em_client *hub_client(hub_t *hub, const char *module);

/* A mosquitto listening on 127.0.0.1:port (plain MQTT, anonymous). */
typedef struct {
  long pid;
  char ctl_id[64];
  char dir[256];
  int port;
} broker_t;
/* Starts it; false (after a message) when no mosquitto is available: the test is skipped. */
bool broker_start(broker_t *b);
void broker_stop(broker_t *b);

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
