#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int g_failures = 0;
int g_checks = 0;

long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
  }
  fclose(f);
  buf[len] = 0;
  return buf;
}

const char *test_manifest(void) {
  const char *m = getenv("EM_TEST_MANIFEST");
  return m ? m : "tests/c/manifest.json";
}

/* The value of "key": in a flat JSON object: a number or a string (copied into out). */
static bool json_field(const char *json, const char *key, char *out, size_t cap) {
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = strstr(json, pat);
  if (!p) return false;
  p = strchr(p + strlen(pat), ':');
  if (!p) return false;
  p++;
  while (*p == ' ' || *p == '\n' || *p == '\t') p++;
  size_t n = 0;
  if (*p == '"') {
    p++;
    while (*p && *p != '"' && n + 1 < cap) out[n++] = *p++;
  } else {
    while (*p && *p != ',' && *p != '\n' && *p != '}' && n + 1 < cap) out[n++] = *p++;
  }
  out[n] = 0;
  return n > 0;
}

static const char *devhub_binary(void) {
  const char *d = getenv("EM_DEVHUB");
  return d ? d : "target/debug/devhub";
}

void hub_start(hub_t *hub, const char *manifest) {
  memset(hub, 0, sizeof *hub);
  snprintf(hub->devhub, sizeof hub->devhub, "%s", devhub_binary());
  REQUIRE(access(hub->devhub, X_OK) == 0 && "devhub binary (set EM_DEVHUB)");
  const char *tmp = getenv("TMPDIR");
  snprintf(hub->dir, sizeof hub->dir, "%s/em-ctest-XXXXXX", tmp ? tmp : "/tmp");
  REQUIRE(mkdtemp(hub->dir) != NULL);
  snprintf(hub->state, sizeof hub->state, "%s/state", hub->dir);
  char ready[400], log[400];
  snprintf(ready, sizeof ready, "%s/ready.json", hub->dir);
  snprintf(log, sizeof log, "%s/devhub.log", hub->dir);

  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execl(hub->devhub, hub->devhub, "--state-dir", hub->state, "run", "--manifest", manifest,
          "--mqtt-port", "0", "--https-port", "0", "--ready-file", ready, "--log", "warn",
          (char *)NULL);
    _exit(127);
  }
  hub->pid = pid;
  long long deadline = now_ms() + 60000;
  char *json = NULL;
  while (now_ms() < deadline) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      char *l = read_file(log);
      fprintf(stderr, "devhub exited early:\n%s\n", l ? l : "");
      free(l);
      exit(1);
    }
    json = read_file(ready);
    if (json && strchr(json, '}')) break;
    free(json);
    json = NULL;
    sleep_ms(50);
  }
  REQUIRE(json != NULL && "devhub ready file within 60 s");
  char v[512];
  REQUIRE(json_field(json, "mqtt_tls_port", v, sizeof v));
  hub->mqtt_port = atoi(v);
  REQUIRE(json_field(json, "https_port", v, sizeof v));
  hub->https_port = atoi(v);
  REQUIRE(json_field(json, "device_id", hub->device_id, sizeof hub->device_id));
  REQUIRE(json_field(json, "ca_file", v, sizeof v));
  hub->ca_pem = read_file(v);
  REQUIRE(hub->ca_pem != NULL);
  free(json);
}

static void rm_rf(const char *dir) {
  pid_t pid = fork();
  if (pid == 0) {
    execlp("rm", "rm", "-rf", dir, (char *)NULL);
    _exit(127);
  }
  if (pid > 0) waitpid(pid, NULL, 0);
}

void hub_stop(hub_t *hub) {
  if (hub->pid > 0) {
    kill(hub->pid, SIGTERM);
    long long deadline = now_ms() + 5000;
    int status;
    while (waitpid(hub->pid, &status, WNOHANG) == 0) {
      if (now_ms() > deadline) {
        kill(hub->pid, SIGKILL);
        waitpid(hub->pid, &status, 0);
        break;
      }
      sleep_ms(20);
    }
    hub->pid = 0;
  }
  if (!getenv("EM_KEEP_HUB_DIR")) rm_rf(hub->dir);
  free(hub->ca_pem);
  hub->ca_pem = NULL;
}

char *hub_cli(hub_t *hub, const char *args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s' --state-dir '%s' %s", hub->devhub, hub->state, args);
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
    len += n;
    if (cap - len < 2) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
  }
  buf[len] = 0;
  int rc = pclose(p);
  if (rc != 0) {
    fprintf(stderr, "devhub %s: exit %d: %s\n", args, rc, buf);
    free(buf);
    return NULL;
  }
  return buf;
}

char *hub_connection_string(hub_t *hub, const char *module) {
  char args[256];
  snprintf(args, sizeof args, "connection-string '%s'", module);
  char *cs = hub_cli(hub, args);
  REQUIRE(cs != NULL);
  cs[strcspn(cs, "\r\n")] = 0;
  return cs;
}

void hub_options(hub_t *hub, em_client_options *o) {
  em_error *e = em_client_options_init(o);
  REQUIRE(e == NULL);
  o->mqtt_port = (uint16_t)hub->mqtt_port;
  o->https_port = (uint16_t)hub->https_port;
  o->trust_bundle_pem = hub->ca_pem;
  o->connect_timeout_ms = 20000;
  o->operation_timeout_ms = 20000;
  o->backoff_min_ms = 50;
  o->backoff_max_ms = 1000;
}

em_client *hub_client(hub_t *hub, const char *module) {
  char *cs = hub_connection_string(hub, module);
  em_client_options o;
  hub_options(hub, &o);
  em_client *c = NULL;
  em_error *e = em_client_create_from_connection_string(cs, &o, &c);
  free(cs);
  if (e) {
    fprintf(stderr, "create %s: %s\n", module, em_error_message(e));
    em_error_free(e);
    exit(1);
  }
  e = em_client_connect(c, 30000);
  if (e) {
    fprintf(stderr, "connect %s: %s: %s\n", module, em_error_kind_name(em_error_kind(e)),
            em_error_message(e));
    em_error_free(e);
    exit(1);
  }
  return c;
}

void counter_init(counter_t *c) {
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  c->count = 0;
}

void counter_add(counter_t *c, int n) {
  pthread_mutex_lock(&c->mu);
  c->count += n;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

int counter_get(counter_t *c) {
  pthread_mutex_lock(&c->mu);
  int n = c->count;
  pthread_mutex_unlock(&c->mu);
  return n;
}

int counter_wait(counter_t *c, int target, int ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&c->mu);
  while (c->count < target) {
    if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
  }
  int n = c->count;
  pthread_mutex_unlock(&c->mu);
  return n;
}

void counter_destroy(counter_t *c) {
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
}

int test_summary(const char *name) {
  printf("%s: %d passed, %d failed\n", name, g_checks - g_failures, g_failures);
  return g_failures == 0 ? 0 : 1;
}
