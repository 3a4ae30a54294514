/* End to end through devhub: messages (system + custom properties), telemetry, async and
 * batch sends, blocking and async events, twin (get, reported, desired patches), methods
 * (module->module and service->module), connection state, log callback, close. */
#include <string.h>

#include "harness.h"

static hub_t hub;

/* The next event of `kind`, skipping connection-status events; NULL after `ms`. */
static em_event *wait_event(em_client *c, int kind, int ms) {
  long long deadline = now_ms() + ms;
  while (now_ms() < deadline) {
    em_event *ev = NULL;
    em_error *e = em_client_next_event(c, 200, &ev);
    if (e) {
      fprintf(stderr, "next_event: %s\n", em_error_message(e));
      em_error_free(e);
      return NULL;
    }
    if (!ev) continue;
    if (em_event_kind(ev) == kind) return ev;
    if (em_event_kind(ev) != EM_EVENT_CONNECTION_STATUS)
      fprintf(stderr, "skipping unexpected event kind %d\n", (int)em_event_kind(ev));
    em_event_free(ev);
  }
  return NULL;
}

static bool body_is(const em_message *m, const char *text) {
  const uint8_t *data = NULL;
  size_t len = 0;
  em_error *e = em_message_body(m, &data, &len);
  if (e) {
    em_error_free(e);
    return false;
  }
  return len == strlen(text) && memcmp(data, text, len) == 0;
}

static em_message *text_message(const char *text) {
  em_message *m = NULL;
  REQUIRE(em_message_new((const uint8_t *)text, strlen(text), &m) == NULL);
  return m;
}

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* ---- log callback ---- */
typedef struct {
  counter_t seen;
  int level;
  char message[256];
  char target[128];
} log_ctx;

static void on_log(void *ud, int32_t level, const char *target, const char *message) {
  log_ctx *ctx = ud;
  if (strstr(message, "hello from the test")) {
    ctx->level = level;
    snprintf(ctx->message, sizeof ctx->message, "%s", message);
    snprintf(ctx->target, sizeof ctx->target, "%s", target);
    counter_add(&ctx->seen, 1);
  }
}

static void test_log_callback(void) {
  log_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  counter_init(&ctx.seen);
  CHECK_OK(em_set_log_callback(on_log, &ctx, EM_LOG_INFO));
  CHECK_OK(em_test_log(EM_LOG_DEBUG, "hello from the test (debug, filtered)"));
  CHECK_OK(em_test_log(EM_LOG_WARN, "hello from the test"));
  CHECK(counter_get(&ctx.seen) == 1);
  CHECK(ctx.level == EM_LOG_WARN);
  CHECK(streq(ctx.message, "hello from the test"));
  CHECK(streq(ctx.target, "edgemodule_ffi"));
  CHECK_OK(em_set_log_callback(NULL, NULL, EM_LOG_OFF));
  CHECK_OK(em_test_log(EM_LOG_ERROR, "hello from the test"));
  CHECK(counter_get(&ctx.seen) == 1);
  CHECK_ERR(em_set_log_callback(on_log, &ctx, 9), EM_ERROR_INVALID_ARGUMENT);
  counter_destroy(&ctx.seen);
}

/* ---- messages ---- */
static void test_message_with_properties(em_client *sender, em_client *receiver) {
  const char *body = "{\"machine\":{\"temperature\":30.5}}";
  em_message *m = text_message(body);
  CHECK_OK(em_message_set_message_id(m, "mid-1"));
  CHECK_OK(em_message_set_correlation_id(m, "cid-1"));
  CHECK_OK(em_message_set_user_id(m, "uid-1"));
  CHECK_OK(em_message_set_content_type(m, "application/json"));
  CHECK_OK(em_message_set_content_encoding(m, "utf-8"));
  CHECK_OK(em_message_set_creation_time_utc(m, "2024-01-02T03:04:05Z"));
  CHECK_OK(em_message_set_expiry_time_utc(m, "2099-01-01T00:00:00Z"));
  CHECK_OK(em_message_set_property(m, "alert", "yes"));
  CHECK_OK(em_message_set_property(m, "odd key&=", "v/a%l ue+#?"));
  CHECK_OK(em_message_set_property(m, "empty", ""));
  CHECK_OK(em_message_set_property(m, "gone", "x"));
  CHECK_OK(em_message_remove_property(m, "gone"));
  CHECK(em_message_property_count(m) == 3);
  CHECK_OK(em_client_send_to_output(sender, "out1", m, 20000));
  em_message_free(m);

  em_event *ev = wait_event(receiver, EM_EVENT_INPUT_MESSAGE, 20000);
  CHECK(ev != NULL);
  if (!ev) return;
  CHECK(streq(em_event_input_name(ev), "input1"));
  const em_message *r = em_event_message(ev);
  CHECK(r != NULL);
  CHECK(body_is(r, body));
  CHECK(streq(em_message_message_id(r), "mid-1"));
  CHECK(streq(em_message_correlation_id(r), "cid-1"));
  CHECK(streq(em_message_user_id(r), "uid-1"));
  CHECK(streq(em_message_content_type(r), "application/json"));
  CHECK(streq(em_message_content_encoding(r), "utf-8"));
  CHECK(streq(em_message_creation_time_utc(r), "2024-01-02T03:04:05Z"));
  CHECK(streq(em_message_expiry_time_utc(r), "2099-01-01T00:00:00Z"));
  CHECK(streq(em_message_input_name(r), "input1"));
  CHECK(streq(em_message_connection_module_id(r), "sender"));
  CHECK(streq(em_message_connection_device_id(r), hub.device_id));
  CHECK(streq(em_message_property(r, "alert"), "yes"));
  CHECK(streq(em_message_property(r, "odd key&="), "v/a%l ue+#?"));
  CHECK(streq(em_message_property(r, "empty"), ""));
  CHECK(em_message_property(r, "gone") == NULL);
  CHECK(!em_message_has_property(r, "gone"));
  /* Iteration sees our three properties with their values. */
  int found = 0;
  for (size_t i = 0; i < em_message_property_count(r); i++) {
    const char *k = NULL, *v = NULL;
    CHECK_OK(em_message_property_at(r, i, &k, &v));
    if (streq(k, "alert") && streq(v, "yes")) found++;
    if (streq(k, "odd key&=") && streq(v, "v/a%l ue+#?")) found++;
    if (streq(k, "empty") && streq(v, "")) found++;
  }
  CHECK(found == 3);
  CHECK_OK(em_event_ack(ev));
  CHECK_OK(em_event_ack(ev)); /* twice is harmless */
  em_event_free(ev);
}

typedef struct {
  counter_t done;
  int errors;
  void *seen_user_data;
} completion_ctx;

static void on_done(void *ud, em_error *e) {
  completion_ctx *ctx = ud;
  ctx->seen_user_data = ud;
  if (e) {
    fprintf(stderr, "completion error: %s\n", em_error_message(e));
    ctx->errors++;
    em_error_free(e);
  }
  counter_add(&ctx->done, 1);
}

static void test_async_send_and_telemetry(em_client *sender, em_client *receiver) {
  completion_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  counter_init(&ctx.done);
  em_message *m = text_message("async-1");
  CHECK_OK(em_client_send_to_output_async(sender, "out1", m, on_done, &ctx));
  em_message_free(m); /* copied by the call: freeing now is fine */
  m = text_message("telemetry-async");
  CHECK_OK(em_client_send_telemetry_async(sender, m, on_done, &ctx));
  CHECK_OK(em_client_send_telemetry(sender, m, 20000));
  em_message_free(m);
  CHECK(counter_wait(&ctx.done, 2, 20000) == 2);
  CHECK(ctx.errors == 0);
  CHECK(ctx.seen_user_data == &ctx);

  em_event *ev = wait_event(receiver, EM_EVENT_INPUT_MESSAGE, 20000);
  CHECK(ev && body_is(em_event_message(ev), "async-1"));
  if (ev) CHECK_OK(em_event_ack(ev));
  em_event_free(ev);
  sleep_ms(100);
  CHECK(counter_get(&ctx.done) == 2); /* exactly once each */
  counter_destroy(&ctx.done);
}

static void test_batch(em_client *sender, em_client *receiver) {
  enum { N = 5 };
  em_message *msgs[N];
  char text[32];
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "batch-%d", i);
    msgs[i] = text_message(text);
  }
  em_error *results[N];
  for (int i = 0; i < N; i++) results[i] = (em_error *)1; /* must be overwritten */
  CHECK_OK(em_client_send_batch_to_output(sender, "out1", (const em_message *const *)msgs, N,
                                          20000, results));
  for (int i = 0; i < N; i++) CHECK(results[i] == NULL);

  completion_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  counter_init(&ctx.done);
  CHECK_OK(em_client_send_batch_to_output_async(sender, "out1", (const em_message *const *)msgs,
                                                N, on_done, &ctx));
  for (int i = 0; i < N; i++) em_message_free(msgs[i]);
  CHECK(counter_wait(&ctx.done, 1, 20000) == 1);
  CHECK(ctx.errors == 0);
  counter_destroy(&ctx.done);

  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < N; i++) {
      em_event *ev = wait_event(receiver, EM_EVENT_INPUT_MESSAGE, 20000);
      snprintf(text, sizeof text, "batch-%d", i);
      CHECK(ev && body_is(em_event_message(ev), text));
      if (ev) CHECK_OK(em_event_ack(ev));
      em_event_free(ev);
    }
  }
}

typedef struct {
  counter_t done;
  em_event *event;
  int error_kind;
} event_ctx;

static void on_event(void *ud, em_error *e, em_event *ev) {
  event_ctx *ctx = ud;
  ctx->error_kind = em_error_kind(e);
  em_error_free(e);
  ctx->event = ev;
  counter_add(&ctx->done, 1);
}

static void test_next_event_async(em_client *sender, em_client *receiver) {
  event_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  counter_init(&ctx.done);
  /* Skip connection-status events that may be queued: poll them away first. */
  for (;;) {
    em_event *ev = NULL;
    CHECK_OK(em_client_next_event(receiver, 0, &ev));
    if (!ev) break;
    em_event_free(ev);
  }
  CHECK_OK(em_client_next_event_async(receiver, on_event, &ctx));
  sleep_ms(100);
  CHECK(counter_get(&ctx.done) == 0);
  em_message *m = text_message("for-async-wait");
  CHECK_OK(em_client_send_to_output(sender, "out1", m, 20000));
  em_message_free(m);
  CHECK(counter_wait(&ctx.done, 1, 20000) == 1);
  CHECK(ctx.error_kind == EM_ERROR_NONE);
  CHECK(em_event_kind(ctx.event) == EM_EVENT_INPUT_MESSAGE);
  CHECK(body_is(em_event_message(ctx.event), "for-async-wait"));
  CHECK_OK(em_event_ack(ctx.event));
  em_event_free(ctx.event);
  counter_destroy(&ctx.done);
}

/* ---- twin ---- */
typedef struct {
  counter_t done;
  char *json;
  int error_kind;
} json_ctx;

static void on_json(void *ud, em_error *e, char *json) {
  json_ctx *ctx = ud;
  ctx->error_kind = em_error_kind(e);
  em_error_free(e);
  ctx->json = json;
  counter_add(&ctx->done, 1);
}

static void test_twin(em_client *receiver) {
  char *twin = NULL;
  CHECK_OK(em_client_get_twin(receiver, 20000, &twin));
  CHECK(twin && strstr(twin, "\"TemperatureThreshold\":25"));
  CHECK(twin && strstr(twin, "\"desired\""));
  em_string_free(twin);

  int64_t version = 0;
  CHECK_OK(em_client_patch_reported(receiver, "{\"TemperatureThreshold\":25,\"state\":\"ok\"}",
                                    20000, &version));
  CHECK(version >= 1);
  CHECK_ERR(em_client_patch_reported(receiver, "[1,2]", 20000, NULL),
            EM_ERROR_INVALID_ARGUMENT);
  CHECK_ERR(em_client_patch_reported(receiver, "{not json", 20000, NULL),
            EM_ERROR_INVALID_ARGUMENT);

  completion_ctx done;
  memset(&done, 0, sizeof done);
  counter_init(&done.done);
  CHECK_OK(em_client_patch_reported_async(receiver, "{\"async\":true}", on_done, &done));
  CHECK(counter_wait(&done.done, 1, 20000) == 1);
  CHECK(done.errors == 0);
  counter_destroy(&done.done);

  json_ctx j;
  memset(&j, 0, sizeof j);
  counter_init(&j.done);
  CHECK_OK(em_client_get_twin_async(receiver, on_json, &j));
  CHECK(counter_wait(&j.done, 1, 20000) == 1);
  CHECK(j.error_kind == EM_ERROR_NONE);
  CHECK(j.json && strstr(j.json, "\"state\":\"ok\""));
  CHECK(j.json && strstr(j.json, "\"async\":true"));
  em_string_free(j.json);
  counter_destroy(&j.done);

  /* A desired change made by the service side arrives as an event. */
  char *out = hub_cli(&hub, "twin update receiver --desired '{\"TemperatureThreshold\": 30}'");
  CHECK(out != NULL);
  free(out);
  em_event *ev = wait_event(receiver, EM_EVENT_DESIRED_PROPERTIES, 20000);
  CHECK(ev != NULL);
  if (ev) {
    const char *patch = em_event_desired_json(ev);
    CHECK(patch && strstr(patch, "\"TemperatureThreshold\":30"));
    int64_t v = 0;
    CHECK(em_event_desired_version(ev, &v));
    CHECK(v >= 2);
    CHECK(em_event_method_name(ev) == NULL);
    CHECK_OK(em_event_ack(ev)); /* not an input message: does nothing */
    em_event_free(ev);
  }
}

/* ---- methods ---- */
typedef struct {
  counter_t done;
  int error_kind;
  int status;
  char *payload;
} method_ctx;

static void on_method(void *ud, em_error *e, int32_t status, char *payload) {
  method_ctx *ctx = ud;
  ctx->error_kind = em_error_kind(e);
  if (e) fprintf(stderr, "invoke: %s\n", em_error_message(e));
  em_error_free(e);
  ctx->status = status;
  ctx->payload = payload;
  counter_add(&ctx->done, 1);
}

typedef struct {
  char *out;
} cli_ctx;

static void *invoke_from_service(void *arg) {
  cli_ctx *c = arg;
  c->out = hub_cli(&hub, "invoke receiver ping --payload '{\"n\":7}' --timeout 20");
  return NULL;
}

static void answer_one_method(em_client *receiver, const char *name, const char *payload,
                              int status, const char *answer) {
  em_event *ev = wait_event(receiver, EM_EVENT_METHOD_REQUEST, 20000);
  CHECK(ev != NULL);
  if (!ev) return;
  CHECK(streq(em_event_method_name(ev), name));
  CHECK(streq(em_event_method_payload_json(ev), payload));
  const char *rid = em_event_method_request_id(ev);
  CHECK(rid && *rid);
  CHECK_OK(em_client_respond_method(receiver, rid, status, answer, 20000));
  em_event_free(ev);
}

static void test_methods(em_client *sender, em_client *receiver) {
  method_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  counter_init(&ctx.done);
  CHECK_OK(em_client_invoke_method_async(sender, hub.device_id, "receiver", "reset",
                                         "{\"a\":1}", 20, 5, on_method, &ctx));
  answer_one_method(receiver, "reset", "{\"a\":1}", 200, "{\"ok\":true}");
  CHECK(counter_wait(&ctx.done, 1, 30000) == 1);
  CHECK(ctx.error_kind == EM_ERROR_NONE);
  CHECK(ctx.status == 200);
  CHECK(streq(ctx.payload, "{\"ok\":true}"));
  em_string_free(ctx.payload);
  counter_destroy(&ctx.done);

  /* Service -> module through devhub's CLI, answered with the async respond. */
  pthread_t t;
  cli_ctx c = {NULL};
  REQUIRE(pthread_create(&t, NULL, invoke_from_service, &c) == 0);
  em_event *ev = wait_event(receiver, EM_EVENT_METHOD_REQUEST, 30000);
  CHECK(ev != NULL);
  if (ev) {
    CHECK(streq(em_event_method_name(ev), "ping"));
    CHECK(streq(em_event_method_payload_json(ev), "{\"n\":7}"));
    completion_ctx done;
    memset(&done, 0, sizeof done);
    counter_init(&done.done);
    CHECK_OK(em_client_respond_method_async(receiver, em_event_method_request_id(ev), 201,
                                            "{\"pong\":7}", on_done, &done));
    CHECK(counter_wait(&done.done, 1, 20000) == 1);
    CHECK(done.errors == 0);
    counter_destroy(&done.done);
    em_event_free(ev);
  }
  pthread_join(t, NULL);
  CHECK(c.out && strstr(c.out, "201") && strstr(c.out, "pong"));
  free(c.out);

  /* Blocking invoke of a module that is not connected: a typed error, not a hang. */
  int32_t status = -1;
  char *payload = NULL;
  em_error *e = em_client_invoke_method(sender, hub.device_id, "stress", "x", NULL, 5, 0,
                                        &status, &payload);
  CHECK(e != NULL);
  CHECK(em_error_kind(e) == EM_ERROR_NOT_FOUND || em_error_kind(e) == EM_ERROR_TIMEOUT);
  CHECK(status == -1 && payload == NULL); /* out-params untouched on failure */
  em_error_free(e);
}

static void test_state(em_client *sender) {
  em_connection_status s = EM_STATUS_UNKNOWN;
  CHECK_OK(em_client_connection_status(sender, &s));
  CHECK(s == EM_STATUS_CONNECTED);
  size_t depth = 99;
  uint64_t age = 99;
  CHECK_OK(em_client_queue_stats(sender, &depth, &age));
  CHECK(depth == 0);
  CHECK(age == 0);
}

static void test_close(em_client *sender, em_client *receiver) {
  CHECK_OK(em_client_close(receiver, 10000));
  CHECK_OK(em_client_close(receiver, 10000)); /* twice is harmless */
  em_event *ev = (em_event *)1;
  CHECK_ERR(em_client_next_event(receiver, 100, &ev), EM_ERROR_CLOSED);
  CHECK(ev == (em_event *)1);
  em_message *m = text_message("after close");
  CHECK_ERR(em_client_send_to_output(receiver, "out1", m, 1000), EM_ERROR_CLOSED);
  em_message_free(m);
  em_client_free(receiver);
  em_client_free(sender);
}

/* The IoT Edge environment (`devhub env`: IOTEDGE_* variables, Workload API for the key and the
 * trust bundle) instead of a connection string. */
static void test_from_environment(void) {
  int vars = hub_export_env(&hub, "receiver");
  CHECK(vars >= 8);
  em_client_options o;
  hub_options(&hub, &o);
  o.trust_bundle_pem = NULL; /* from the Workload API */
  em_client *c = NULL;
  CHECK_OK(em_client_create_from_environment(&o, &c));
  if (c) {
    CHECK_OK(em_client_connect(c, 30000));
    char *twin = NULL;
    CHECK_OK(em_client_get_twin(c, 20000, &twin));
    CHECK(twin && strstr(twin, "TemperatureThreshold"));
    em_string_free(twin);
    em_client_free(c);
  }
  unsetenv("IOTEDGE_MODULEID");
  unsetenv("EdgeHubConnectionString");
}

int main(void) {
  CHECK(streq(em_version(), "0.1.0"));
  test_log_callback();
  hub_start(&hub, test_manifest());
  em_client *receiver = hub_client(&hub, "receiver");
  em_client *sender = hub_client(&hub, "sender");
  test_message_with_properties(sender, receiver);
  test_async_send_and_telemetry(sender, receiver);
  test_batch(sender, receiver);
  test_next_event_async(sender, receiver);
  test_twin(receiver);
  test_methods(sender, receiver);
  test_state(sender);
  test_close(sender, receiver);
  test_from_environment();
  hub_stop(&hub);
  return test_summary("test_e2e");
}
