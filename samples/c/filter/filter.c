/* filter (C): forwards readings from input `input1` whose `machine.temperature` exceeds the
 * desired property `TemperatureThreshold` to output `output1`, tagged `MessageType=Alert`.
 * Desired patches change the threshold (reported back); method `reset` restores the default.
 *
 * The same module as samples/rust/src/bin/filter.rs, written against libedgemodule's C API:
 * one thread pulls events with em_client_next_event and answers them with blocking calls.
 * Environment: the IoT Edge variables (or EdgeHubConnectionString +
 * EdgeModuleCACertificateFile), plus EDGEMODULE_MQTT_PORT / EDGEMODULE_HTTPS_PORT for a
 * devhub on ephemeral ports. */
#include <edgemodule.h>

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUT "input1"
#define OUTPUT "output1"
#define DEFAULT_THRESHOLD 25.0
#define OP_TIMEOUT_MS 30000

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

typedef struct {
  em_client *client;
  double threshold;
  unsigned long received;
  unsigned long alerts;
} filter_t;

/* Prints the error with `what`, frees it, returns true if there was one. */
static int failed(em_error *e, const char *what) {
  if (!e) return 0;
  fprintf(stderr, "filter: %s failed: %s: %s\n", what, em_error_kind_name(em_error_kind(e)),
          em_error_message(e));
  em_error_free(e);
  return 1;
}

/* 25.0 as "25", 25.5 as "25.5": what a person would write in the twin. */
static const char *number(double x, char *buf, size_t cap) {
  if (x == (double)(long long)x && x > -1e15 && x < 1e15)
    snprintf(buf, cap, "%lld", (long long)x);
  else
    snprintf(buf, cap, "%.15g", x);
  return buf;
}

/* The number after "key": at nesting depth `depth` below `json`'s start, if any. A small
 * scanner for the two documents this module reads (sensor readings and twin patches). */
static int json_number(const char *json, size_t len, const char *key, double *out) {
  size_t klen = strlen(key);
  for (size_t i = 0; i + klen + 2 < len; i++) {
    if (json[i] == '"' && strncmp(json + i + 1, key, klen) == 0 && json[i + 1 + klen] == '"') {
      size_t j = i + klen + 2;
      while (j < len && isspace((unsigned char)json[j])) j++;
      if (j >= len || json[j] != ':') continue;
      j++;
      while (j < len && isspace((unsigned char)json[j])) j++;
      char buf[64];
      size_t n = 0;
      while (j < len && n + 1 < sizeof buf && strchr("+-0123456789.eE", json[j])) buf[n++] = json[j++];
      buf[n] = 0;
      if (n == 0) return 0;
      char *end = NULL;
      double v = strtod(buf, &end);
      if (end == buf) return 0;
      *out = v;
      return 1;
    }
  }
  return 0;
}

/* machine.temperature of a sensor reading. */
static int machine_temperature(const uint8_t *body, size_t len, double *t) {
  const char *s = (const char *)body;
  const char *m = NULL;
  for (size_t i = 0; i + 9 < len; i++)
    if (memcmp(s + i, "\"machine\"", 9) == 0) {
      m = s + i;
      break;
    }
  if (!m) return 0;
  return json_number(m, len - (size_t)(m - s), "temperature", t);
}

static void report(filter_t *f) {
  char patch[128], num[64];
  snprintf(patch, sizeof patch, "{\"TemperatureThreshold\":%s}",
           number(f->threshold, num, sizeof num));
  failed(em_client_patch_reported(f->client, patch, OP_TIMEOUT_MS, NULL),
         "reporting the threshold");
}

/* The alert for a reading: same body and properties, plus MessageType=Alert. */
static em_message *alert_for(const em_message *in) {
  const uint8_t *body = NULL;
  size_t len = 0;
  em_message *out = NULL;
  if (failed(em_message_body(in, &body, &len), "reading the body") ||
      failed(em_message_new(body, len, &out), "creating the alert"))
    return NULL;
  em_error *e = em_message_set_content_type(out, em_message_content_type(in));
  if (!e) e = em_message_set_content_encoding(out, em_message_content_encoding(in));
  if (!e) e = em_message_set_creation_time_utc(out, em_message_creation_time_utc(in));
  for (size_t i = 0; !e && i < em_message_property_count(in); i++) {
    const char *k = NULL, *v = NULL;
    e = em_message_property_at(in, i, &k, &v);
    if (!e) e = em_message_set_property(out, k, v);
  }
  if (!e) e = em_message_set_property(out, "MessageType", "Alert");
  if (failed(e, "building the alert")) {
    em_message_free(out);
    return NULL;
  }
  return out;
}

static void on_input(filter_t *f, em_event *ev) {
  unsigned long n = ++f->received;
  const char *input = em_event_input_name(ev);
  const em_message *msg = em_event_message(ev);
  const uint8_t *body = NULL;
  size_t len = 0;
  double t = 0;
  char a[64], b[64];
  if (strcmp(input, INPUT) != 0) {
    printf("filter: #%lu on unexpected input \"%s\", dropped\n", n, input);
  } else if (em_message_body(msg, &body, &len) != NULL || !machine_temperature(body, len, &t)) {
    printf("filter: #%lu on %s is not a sensor reading, dropped\n", n, input);
  } else if (t <= f->threshold) {
    printf("filter: #%lu temperature=%s <= %s, dropped\n", n, number(t, a, sizeof a),
           number(f->threshold, b, sizeof b));
  } else {
    em_message *out = alert_for(msg);
    if (!out) return; /* not acked: the hub redelivers it */
    em_error *e = em_client_send_to_output(f->client, OUTPUT, out, OP_TIMEOUT_MS);
    em_message_free(out);
    if (failed(e, "forwarding")) return; /* not acked: redelivered, not lost */
    f->alerts++;
    printf("filter: #%lu temperature=%s > %s -> alert #%lu to %s\n", n, number(t, a, sizeof a),
           number(f->threshold, b, sizeof b), f->alerts, OUTPUT);
  }
  failed(em_event_ack(ev), "ack");
}

static void on_desired(filter_t *f, em_event *ev) {
  const char *patch = em_event_desired_json(ev);
  double t;
  if (!json_number(patch, strlen(patch), "TemperatureThreshold", &t)) return;
  double before = f->threshold;
  f->threshold = t;
  int64_t version = 0;
  char a[64], b[64], v[32] = "?";
  if (em_event_desired_version(ev, &version)) snprintf(v, sizeof v, "%lld", (long long)version);
  printf("filter: threshold changed %s -> %s (desired version %s)\n", number(before, a, sizeof a),
         number(t, b, sizeof b), v);
  report(f);
}

static void on_method(filter_t *f, em_event *ev) {
  const char *name = em_event_method_name(ev);
  char answer[256], a[64], b[64];
  int status;
  if (strcmp(name, "reset") == 0) {
    double before = f->threshold;
    f->threshold = DEFAULT_THRESHOLD;
    printf("filter: method reset: threshold %s -> %s\n", number(before, a, sizeof a),
           number(f->threshold, b, sizeof b));
    report(f);
    status = 200;
    snprintf(answer, sizeof answer, "{\"threshold\":%s}", number(f->threshold, a, sizeof a));
  } else {
    printf("filter: unknown method \"%s\" (payload %s), 404\n", name,
           em_event_method_payload_json(ev));
    status = 404;
    /* Method names are plain identifiers in practice; keep the JSON valid anyway. */
    snprintf(answer, sizeof answer, "{\"message\":\"method is not implemented\"}");
  }
  failed(em_client_respond_method(f->client, em_event_method_request_id(ev), status, answer,
                                  OP_TIMEOUT_MS),
         "answering the method");
}

static const char *status_name(em_connection_status s) {
  switch (s) {
    case EM_STATUS_CONNECTED: return "Connected";
    case EM_STATUS_DISCONNECTED: return "Disconnected";
    case EM_STATUS_DISCONNECTED_RETRYING: return "DisconnectedRetrying";
    default: return "Unknown";
  }
}

/* Reads the threshold from the twin's desired section. */
static double initial_threshold(filter_t *f) {
  char *twin = NULL;
  double t = DEFAULT_THRESHOLD;
  if (failed(em_client_get_twin(f->client, OP_TIMEOUT_MS, &twin), "reading the twin")) return t;
  const char *desired = strstr(twin, "\"desired\"");
  const char *reported = strstr(twin, "\"reported\"");
  if (desired) {
    size_t len = reported && reported > desired ? (size_t)(reported - desired) : strlen(desired);
    json_number(desired, len, "TemperatureThreshold", &t);
  }
  em_string_free(twin);
  return t;
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  setvbuf(stdout, NULL, _IOLBF, 0);

  em_client_options options;
  /* Unset ports come from EDGEMODULE_MQTT_PORT / EDGEMODULE_HTTPS_PORT (applied by the
   * library) when running against a local devhub on ephemeral ports. */
  if (failed(em_client_options_init(&options), "options")) return 1;

  filter_t f = {NULL, DEFAULT_THRESHOLD, 0, 0};
  if (failed(em_client_create_from_environment(&options, &f.client), "creating the client"))
    return 1;
  int code = 0;
  if (failed(em_client_connect(f.client, EM_TIMEOUT_INFINITE), "connecting")) {
    code = 1;
    goto out;
  }
  f.threshold = initial_threshold(&f);
  report(&f);
  char num[64];
  printf("filter: connected; TemperatureThreshold=%s, reading %s\n",
         number(f.threshold, num, sizeof num), INPUT);

  while (!stopping) {
    em_event *ev = NULL;
    em_error *e = em_client_next_event(f.client, 250, &ev);
    if (e) {
      if (em_error_kind(e) != EM_ERROR_CLOSED) failed(e, "waiting for events");
      else em_error_free(e);
      break;
    }
    if (!ev) continue; /* nothing within 250 ms: check for a signal */
    switch (em_event_kind(ev)) {
      case EM_EVENT_INPUT_MESSAGE: on_input(&f, ev); break;
      case EM_EVENT_DESIRED_PROPERTIES: on_desired(&f, ev); break;
      case EM_EVENT_METHOD_REQUEST: on_method(&f, ev); break;
      case EM_EVENT_CONNECTION_STATUS:
        printf("filter: connection %s (reason %d)\n",
               status_name(em_event_connection_status(ev)), (int)em_event_status_reason(ev));
        break;
      default: break;
    }
    em_event_free(ev);
  }
  if (stopping) printf("filter: shutting down\n");
out:
  /* Shutdown order: close (optional), then free: no library thread runs after this. */
  failed(em_client_close(f.client, 5000), "closing");
  em_client_free(f.client);
  return code;
}
