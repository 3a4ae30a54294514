#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <time.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

int g_failures = 0;
int g_checks = 0;

/* ---- time ---------------------------------------------------------------------------------- */

long long now_ms(void) {
#ifdef _WIN32
  return (long long)GetTickCount64();
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

void sleep_ms(int ms) {
#ifdef _WIN32
  Sleep((DWORD)ms);
#else
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
#endif
}

/* ---- small helpers ------------------------------------------------------------------------- */

/* A growable string. */
typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap) cap *= 2;
    b->p = realloc(b->p, cap);
    REQUIRE(b->p != NULL);
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}
static void buf_str(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  REQUIRE(p != NULL);
  memcpy(p, s, n);
  return p;
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
#ifdef EM_DEFAULT_MANIFEST
  return m ? m : EM_DEFAULT_MANIFEST;
#else
  return m ? m : "tests/c/manifest.json";
#endif
}

/* ---- JSON (just enough for ready.json and hostctl's answers) -------------------------------- */

static const char *json_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  return p;
}

/* Decodes the JSON string at p (at its opening quote) into out (if not NULL); returns the
 * position after the closing quote, or NULL if malformed. */
static const char *json_string(const char *p, buf_t *out) {
  if (*p != '"') return NULL;
  p++;
  while (*p && *p != '"') {
    if (*p != '\\') {
      const char *s = p;
      while (*p && *p != '"' && *p != '\\') p++;
      if (out) buf_add(out, s, (size_t)(p - s));
      continue;
    }
    p++;
    char c;
    switch (*p) {
      case 'n': c = '\n'; break;
      case 't': c = '\t'; break;
      case 'r': c = '\r'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'u': {
        unsigned v = 0;
        for (int i = 1; i <= 4; i++) {
          char h = p[i];
          if (!h) return NULL;
          v = v * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
        }
        p += 4;
        char u[4];
        size_t n;
        if (v < 0x80) {
          u[0] = (char)v;
          n = 1;
        } else if (v < 0x800) {
          u[0] = (char)(0xc0 | (v >> 6));
          u[1] = (char)(0x80 | (v & 0x3f));
          n = 2;
        } else { /* surrogate pairs are not needed here */
          u[0] = (char)(0xe0 | (v >> 12));
          u[1] = (char)(0x80 | ((v >> 6) & 0x3f));
          u[2] = (char)(0x80 | (v & 0x3f));
          n = 3;
        }
        if (out) buf_add(out, u, n);
        p++;
        continue;
      }
      case 0: return NULL;
      default: c = *p; /* " \ / */
    }
    if (out) buf_add(out, &c, 1);
    p++;
  }
  return *p == '"' ? p + 1 : NULL;
}

/* Skips one JSON value; returns the position after it or NULL. */
static const char *json_skip(const char *p) {
  p = json_ws(p);
  if (*p == '"') return json_string(p, NULL);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (*p) {
      if (*p == '"') {
        p = json_string(p, NULL);
        if (!p) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[') depth++;
      if (*p == '}' || *p == ']') {
        if (--depth == 0) return p + 1;
      }
      p++;
    }
    return NULL;
  }
  while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r')
    p++;
  return p;
}

/* The value of top-level `key` in the JSON object `json`: a string (decoded) or the raw text
 * of any other value, in a new string (caller frees); NULL if absent or null. */
static char *json_get(const char *json, const char *key) {
  const char *p = json_ws(json);
  if (*p != '{') return NULL;
  p = json_ws(p + 1);
  while (*p == '"') {
    buf_t k = {0};
    p = json_string(p, &k);
    if (!p) {
      free(k.p);
      return NULL;
    }
    bool match = k.p ? strcmp(k.p, key) == 0 : key[0] == 0;
    free(k.p);
    p = json_ws(p);
    if (*p != ':') return NULL;
    p = json_ws(p + 1);
    if (match) {
      buf_t v = {0};
      if (*p == '"') {
        if (!json_string(p, &v)) {
          free(v.p);
          return NULL;
        }
        return v.p ? v.p : xstrdup("");
      }
      const char *end = json_skip(p);
      if (!end || strncmp(p, "null", 4) == 0) return NULL;
      buf_add(&v, p, (size_t)(end - p));
      return v.p;
    }
    p = json_skip(p);
    if (!p) return NULL;
    p = json_ws(p);
    if (*p == ',') p = json_ws(p + 1);
  }
  return NULL;
}

/* Copies top-level `key` of `json` into out; false if absent or empty. */
static bool json_field(const char *json, const char *key, char *out, size_t cap) {
  char *v = json_get(json, key);
  if (!v) return false;
  snprintf(out, cap, "%s", v);
  bool ok = v[0] != 0;
  free(v);
  return ok;
}

static void json_quote(buf_t *b, const char *s) {
  buf_str(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      buf_add(b, esc, 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      buf_str(b, esc);
    } else {
      buf_add(b, (const char *)&c, 1);
    }
  }
  buf_str(b, "\"");
}

/* ---- hostctl backend: plain HTTP/1.1 to cross/hostctl.py ----------------------------------- */

/* "127.0.0.1:PORT" (an http:// prefix is accepted), or NULL for the local backend. */
static const char *hostctl_address(void) {
  const char *a = getenv("EM_HOSTCTL");
  if (!a || !*a) return NULL;
  if (strncmp(a, "http://", 7) == 0) a += 7;
  return a;
}

#ifdef _WIN32
typedef SOCKET sock_t;
#define BAD_SOCK INVALID_SOCKET
#define close_sock closesocket
static void net_init(void) {
  static bool done = false;
  if (!done) {
    WSADATA w;
    REQUIRE(WSAStartup(MAKEWORD(2, 2), &w) == 0);
    done = true;
  }
}
#else
typedef int sock_t;
#define BAD_SOCK (-1)
#define close_sock close
static void net_init(void) {}
#endif

static sock_t tcp_connect(const char *host, int port) {
  net_init();
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return BAD_SOCK;
  sock_t s = socket(AF_INET, SOCK_STREAM, 0);
  if (s == BAD_SOCK) return BAD_SOCK;
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
    close_sock(s);
    return BAD_SOCK;
  }
  return s;
}

/* One request to hostctl; returns the response body (caller frees), the HTTP status in *status.
 * Fails the test when hostctl cannot be reached. */
static char *hostctl_call(const char *method, const char *path, const char *body, int *status) {
  const char *addr = hostctl_address();
  REQUIRE(addr != NULL);
  char host[64];
  snprintf(host, sizeof host, "%s", addr);
  char *colon = strrchr(host, ':');
  REQUIRE(colon != NULL && "EM_HOSTCTL=127.0.0.1:PORT");
  *colon = 0;
  sock_t s = tcp_connect(host, atoi(colon + 1));
  if (s == BAD_SOCK) {
    fprintf(stderr, "hostctl at %s: cannot connect\n", addr);
    exit(1);
  }
  buf_t req = {0};
  char head[512];
  size_t blen = body ? strlen(body) : 0;
  snprintf(head, sizeof head,
           "%s %s HTTP/1.1\r\nHost: hostctl\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n\r\n",
           method, path, blen);
  buf_str(&req, head);
  if (body) buf_add(&req, body, blen);
  size_t off = 0;
  while (off < req.len) {
    int n = (int)send(s, req.p + off, (int)(req.len - off), 0);
    if (n <= 0) {
      fprintf(stderr, "hostctl %s %s: send failed\n", method, path);
      exit(1);
    }
    off += (size_t)n;
  }
  free(req.p);
  buf_t resp = {0};
  char chunk[16384];
  for (;;) {
    int n = (int)recv(s, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    buf_add(&resp, chunk, (size_t)n);
  }
  close_sock(s);
  if (!resp.p || sscanf(resp.p, "HTTP/1.%*d %d", status) != 1) {
    fprintf(stderr, "hostctl %s %s: no HTTP answer\n", method, path);
    exit(1);
  }
  const char *b = strstr(resp.p, "\r\n\r\n");
  char *out = xstrdup(b ? b + 4 : "");
  free(resp.p);
  return out;
}

/* hostctl_call that must answer 200; returns the body. */
static char *hostctl_ok(const char *method, const char *path, const char *body) {
  int status = 0;
  char *r = hostctl_call(method, path, body, &status);
  if (status != 200) {
    fprintf(stderr, "hostctl %s %s: HTTP %d: %s\n", method, path, status, r);
    exit(1);
  }
  return r;
}

static void hub_start_hostctl(hub_t *hub, const char *manifest) {
  char *text = read_file(manifest);
  if (!text) {
    fprintf(stderr, "cannot read the manifest %s\n", manifest);
    exit(1);
  }
  buf_t body = {0};
  buf_str(&body, "{\"manifest\": ");
  json_quote(&body, text);
  buf_str(&body, ", \"ack_timeout\": 30}"); /* devhub's default, as the local backend */
  free(text);
  char *info = hostctl_ok("POST", "/hubs", body.p);
  free(body.p);
  char v[512];
  REQUIRE(json_field(info, "id", hub->ctl_id, sizeof hub->ctl_id));
  REQUIRE(json_field(info, "mqtt_tls_port", v, sizeof v));
  hub->mqtt_port = atoi(v);
  REQUIRE(json_field(info, "https_port", v, sizeof v));
  hub->https_port = atoi(v);
  REQUIRE(json_field(info, "device_id", hub->device_id, sizeof hub->device_id));
  REQUIRE(json_field(info, "state_dir", hub->state, sizeof hub->state));
  REQUIRE(json_field(info, "workload_http", hub->workload_http, sizeof hub->workload_http));
  hub->ca_pem = json_get(info, "ca_pem");
  REQUIRE(hub->ca_pem != NULL && strstr(hub->ca_pem, "BEGIN CERTIFICATE"));
  free(info);
}

static char *hub_cli_hostctl(hub_t *hub, const char *args) {
  buf_t body = {0};
  buf_str(&body, "{\"args\": ");
  json_quote(&body, args);
  buf_str(&body, "}");
  char path[128];
  snprintf(path, sizeof path, "/hubs/%s/cli", hub->ctl_id);
  char *r = hostctl_ok("POST", path, body.p);
  free(body.p);
  char *rc = json_get(r, "rc");
  char *out = json_get(r, "stdout");
  bool ok = rc && strcmp(rc, "0") == 0 && out;
  if (!ok) {
    char *err = json_get(r, "stderr");
    fprintf(stderr, "devhub %s: exit %s: %s%s\n", args, rc ? rc : "?", out ? out : "",
            err ? err : "");
    free(err);
    free(out);
    out = NULL;
  }
  free(rc);
  free(r);
  return out;
}

/* ---- local backend: fork/exec ---------------------------------------------------------------- */

#ifndef _WIN32
static const char *devhub_binary(void) {
  const char *d = getenv("EM_DEVHUB");
#ifdef EM_DEFAULT_DEVHUB
  return d ? d : EM_DEFAULT_DEVHUB;
#else
  return d ? d : "target/debug/devhub";
#endif
}

/* Starts argv[0] with stdout and stderr on `log_fd` (or /dev/null if < 0). Everything the
 * child touches (argv, the descriptor) is prepared here, before fork: the child only dup2s and
 * execs, no path is built or opened after fork. */
static pid_t spawn(char *const argv[], int log_fd) {
  int out = log_fd >= 0 ? log_fd : open("/dev/null", O_WRONLY | O_CLOEXEC);
  REQUIRE(out >= 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(out, 1);
    dup2(out, 2);
    execv(argv[0], argv);
    _exit(127);
  }
  close(out);
  return pid;
}

static void hub_start_local(hub_t *hub, const char *manifest) {
  snprintf(hub->devhub, sizeof hub->devhub, "%s", devhub_binary());
  REQUIRE(access(hub->devhub, X_OK) == 0 && "devhub binary (set EM_DEVHUB)");
  const char *tmp = getenv("TMPDIR");
  snprintf(hub->dir, sizeof hub->dir, "%s/em-ctest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  REQUIRE(mkdtemp(hub->dir) != NULL);
  REQUIRE(hub->dir[0] == '/' && "an absolute temporary directory");
  snprintf(hub->state, sizeof hub->state, "%s/state", hub->dir);
  char ready[400], log[400];
  snprintf(ready, sizeof ready, "%s/ready.json", hub->dir);
  snprintf(log, sizeof log, "%s/devhub.log", hub->dir);

  int log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(log_fd >= 0);
  char *argv[] = {hub->devhub, "--state-dir", hub->state, "run", "--manifest", (char *)manifest,
                  "--mqtt-port", "0", "--https-port", "0", "--ready-file", ready, "--log",
                  "warn", NULL};
  pid_t pid = spawn(argv, log_fd);
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
  if (dir[0] != '/') return; /* never anything relative to the working directory */
  char *argv[] = {"/bin/rm", "-rf", (char *)dir, NULL};
  pid_t pid = spawn(argv, -1);
  waitpid(pid, NULL, 0);
}

/* SIGTERM, then SIGKILL after `ms`. */
static void stop_process(pid_t pid, int ms) {
  kill(pid, SIGTERM);
  long long deadline = now_ms() + ms;
  int status;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (now_ms() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    sleep_ms(20);
  }
}

static char *hub_cli_local(hub_t *hub, const char *args) {
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
#endif /* !_WIN32 */

/* ---- hub API ------------------------------------------------------------------------------- */

void hub_start(hub_t *hub, const char *manifest) {
  memset(hub, 0, sizeof *hub);
  if (hostctl_address()) {
    hub_start_hostctl(hub, manifest);
    return;
  }
#ifdef _WIN32
  fprintf(stderr, "EM_HOSTCTL is not set: on Windows the tests need cross/hostctl.py "
                  "(run them through cross/run.sh windows)\n");
  exit(1);
#else
  hub_start_local(hub, manifest);
#endif
}

void hub_stop(hub_t *hub) {
  if (hub->ctl_id[0]) {
    char path[128];
    snprintf(path, sizeof path, "/hubs/%s", hub->ctl_id);
    free(hostctl_ok("DELETE", path, NULL));
    hub->ctl_id[0] = 0;
  }
#ifndef _WIN32
  if (hub->pid > 0) {
    stop_process((pid_t)hub->pid, 5000);
    hub->pid = 0;
  }
  if (hub->dir[0] && !getenv("EM_KEEP_HUB_DIR")) rm_rf(hub->dir);
  hub->dir[0] = 0;
#endif
  free(hub->ca_pem);
  hub->ca_pem = NULL;
}

char *hub_cli(hub_t *hub, const char *args) {
  if (hub->ctl_id[0]) return hub_cli_hostctl(hub, args);
#ifdef _WIN32
  return NULL;
#else
  return hub_cli_local(hub, args);
#endif
}

char *hub_connection_string(hub_t *hub, const char *module) {
  char args[256];
  snprintf(args, sizeof args, "connection-string '%s'", module);
  char *cs = hub_cli(hub, args);
  REQUIRE(cs != NULL);
  cs[strcspn(cs, "\r\n")] = 0;
  return cs;
}

int hub_export_env(hub_t *hub, const char *module) {
  char args[256];
  snprintf(args, sizeof args, "env '%s'", module);
  char *env = hub_cli(hub, args);
  REQUIRE(env != NULL);
  int vars = 0;
  char *line = env;
  while (line && *line) {
    char *next = strchr(line, '\n');
    if (next) *next++ = 0;
    char *eq = strncmp(line, "export ", 7) == 0 ? strchr(line + 7, '=') : NULL;
    if (eq) {
      *eq = 0;
      const char *name = line + 7;
      char *v = eq + 1;
      size_t len = strlen(v);
      if (len >= 2 && v[0] == '\'' && v[len - 1] == '\'') {
        v[len - 1] = 0;
        v++;
      }
#ifdef _WIN32
      char fixed[1024];
      if (strcmp(name, "IOTEDGE_WORKLOADURI") == 0) {
        /* No unix sockets in the core on Windows: hostctl's TCP forward of the socket. */
        snprintf(fixed, sizeof fixed, "http://%s", hub->workload_http);
        v = fixed;
      } else if (strcmp(name, "EdgeModuleCACertificateFile") == 0 && v[0] == '/') {
        /* The host path as wine shows it (Z: is the host's root). */
        snprintf(fixed, sizeof fixed, "Z:%s", v);
        for (char *c = fixed; *c; c++)
          if (*c == '/') *c = '\\';
        v = fixed;
      }
#endif
      REQUIRE(setenv(name, v, 1) == 0);
      vars++;
    }
    line = next;
  }
  free(env);
  return vars;
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

/* ---- mosquitto ----------------------------------------------------------------------------- */

static bool port_open(int port) {
  sock_t s = tcp_connect("127.0.0.1", port);
  if (s == BAD_SOCK) return false;
  close_sock(s);
  return true;
}

#ifndef _WIN32
static const char *mosquitto_binary(void) {
  static const char *paths[] = {"/usr/sbin/mosquitto", "/usr/bin/mosquitto"};
  for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
    if (access(paths[i], X_OK) == 0) return paths[i];
  return NULL;
}

static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(getsockname(s, (struct sockaddr *)&a, &len) == 0);
  close(s);
  return ntohs(a.sin_port);
}
#endif

bool broker_start(broker_t *b) {
  memset(b, 0, sizeof *b);
  if (hostctl_address()) {
    char *r = hostctl_ok("POST", "/mosquitto", "{\"port\": null}");
    char v[64];
    REQUIRE(json_field(r, "id", b->ctl_id, sizeof b->ctl_id));
    REQUIRE(json_field(r, "port", v, sizeof v));
    b->port = atoi(v);
    free(r);
  } else {
#ifdef _WIN32
    fprintf(stderr, "EM_HOSTCTL is not set: no mosquitto on Windows\n");
    return false;
#else
    const char *bin = mosquitto_binary();
    if (!bin) {
      printf("mosquitto not installed\n");
      return false;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/em-mosq-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    REQUIRE(mkdtemp(b->dir) != NULL);
    char conf[300];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", b->dir);
    b->port = free_port();
    FILE *f = fopen(conf, "w");
    REQUIRE(f);
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", b->port);
    if (geteuid() == 0) fprintf(f, "user root\n"); /* else mosquitto drops to its own user */
    fclose(f);
    char *argv[] = {(char *)bin, "-c", conf, NULL};
    b->pid = spawn(argv, -1);
#endif
  }
  long long deadline = now_ms() + 10000;
  while (!port_open(b->port) && now_ms() < deadline) sleep_ms(50);
  REQUIRE(port_open(b->port));
  return true;
}

void broker_stop(broker_t *b) {
  if (b->ctl_id[0]) {
    char path[128];
    snprintf(path, sizeof path, "/mosquitto/%s", b->ctl_id);
    free(hostctl_ok("DELETE", path, NULL));
    b->ctl_id[0] = 0;
  }
#ifndef _WIN32
  if (b->pid > 0) {
    stop_process((pid_t)b->pid, 5000);
    b->pid = 0;
  }
  if (b->dir[0]) rm_rf(b->dir);
  b->dir[0] = 0;
#endif
}

/* ---- counters ------------------------------------------------------------------------------ */

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
