/* The C sample path under load: `relay` pulls each input message (em_client_next_event),
 * forwards it (em_client_send_to_output, blocking) and acks it, like samples/c/filter does.
 * `src` feeds it in batches and `sink` counts. bench/c/relay_core.rs is the same program on
 * the Rust core; bench/c/run.sh runs both against one devhub and compares.
 *
 * Env: EM_BENCH_CS_SRC / _RELAY / _SINK (connection strings), EM_BENCH_CA_FILE,
 * EM_BENCH_MQTT_PORT, BENCH_MESSAGES (default 20000). Prints "RESULT c <msg/s>". */
#include <edgemodule.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 100
#define BODY 256

static int n_messages = 20000;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(em_error *e, const char *what) {
  if (!e) return;
  fprintf(stderr, "relay_bench: %s: %s\n", what, em_error_message(e));
  em_error_free(e);
  exit(1);
}

static const char *env(const char *name) {
  const char *v = getenv(name);
  if (!v) {
    fprintf(stderr, "relay_bench: %s is not set\n", name);
    exit(2);
  }
  return v;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)len + 1);
  if (fread(buf, 1, (size_t)len, f) != (size_t)len) exit(2);
  buf[len] = 0;
  fclose(f);
  return buf;
}

static em_client *connect_module(const char *cs_var, const char *ca, uint16_t port) {
  em_client_options o;
  die(em_client_options_init(&o), "options");
  o.mqtt_port = port;
  o.trust_bundle_pem = ca;
  em_client *c = NULL;
  die(em_client_create_from_connection_string(env(cs_var), &o, &c), "create");
  die(em_client_connect(c, 30000), "connect");
  return c;
}

static em_client *src, *relay, *sink;

static void *run_src(void *arg) {
  (void)arg;
  char body[BODY];
  memset(body, 'x', sizeof body);
  em_message *batch[BATCH];
  for (int sent = 0; sent < n_messages; sent += BATCH) {
    int k = n_messages - sent < BATCH ? n_messages - sent : BATCH;
    for (int i = 0; i < k; i++) {
      snprintf(body, sizeof body, "%010d", sent + i);
      body[10] = 'x';
      die(em_message_new((const uint8_t *)body, sizeof body, &batch[i]), "message");
    }
    die(em_client_send_batch_to_output(src, "out", (const em_message *const *)batch, (size_t)k,
                                       60000, NULL),
        "src send");
    for (int i = 0; i < k; i++) em_message_free(batch[i]);
  }
  return NULL;
}

/* The sample's loop: pull, forward a copy, ack. */
static void *run_relay(void *arg) {
  (void)arg;
  for (int done = 0; done < n_messages;) {
    em_event *ev = NULL;
    die(em_client_next_event(relay, 60000, &ev), "relay next event");
    if (!ev) die(em_test_fail(false, "relay: no event within 60 s"), "relay");
    if (em_event_kind(ev) == EM_EVENT_INPUT_MESSAGE) {
      die(em_client_send_to_output(relay, "out", em_event_message(ev), 60000), "relay send");
      die(em_event_ack(ev), "ack");
      done++;
    }
    em_event_free(ev);
  }
  return NULL;
}

int main(void) {
  const char *n = getenv("BENCH_MESSAGES");
  if (n) n_messages = atoi(n);
  char *ca = read_file(env("EM_BENCH_CA_FILE"));
  uint16_t port = (uint16_t)atoi(env("EM_BENCH_MQTT_PORT"));
  sink = connect_module("EM_BENCH_CS_SINK", ca, port);
  relay = connect_module("EM_BENCH_CS_RELAY", ca, port);
  src = connect_module("EM_BENCH_CS_SRC", ca, port);

  double t0 = now_s();
  pthread_t ts, tr;
  pthread_create(&tr, NULL, run_relay, NULL);
  pthread_create(&ts, NULL, run_src, NULL);
  for (int got = 0; got < n_messages;) {
    em_event *ev = NULL;
    die(em_client_next_event(sink, 60000, &ev), "sink next event");
    if (!ev) die(em_test_fail(false, "sink: no event within 60 s"), "sink");
    if (em_event_kind(ev) == EM_EVENT_INPUT_MESSAGE) {
      die(em_event_ack(ev), "ack");
      got++;
    }
    em_event_free(ev);
  }
  double secs = now_s() - t0;
  pthread_join(ts, NULL);
  pthread_join(tr, NULL);
  printf("RESULT c %.0f\n", n_messages / secs);
  em_client_free(src);
  em_client_free(relay);
  em_client_free(sink);
  free(ca);
  return 0;
}
