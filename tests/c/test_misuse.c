/* Misuse of the C API: NULL for every pointer argument, bad strings and options, unknown and
 * freed handles, calls after close, completions counted (exactly once, user_data round-trip,
 * none after em_client_free), free with events and operations pending, blocking calls and
 * free from a completion, and the panic barrier. */
#include <string.h>

#include "harness.h"

static hub_t hub;

#define INV EM_ERROR_INVALID_ARGUMENT

static em_message *text_message(const char *text) {
  em_message *m = NULL;
  REQUIRE(em_message_new((const uint8_t *)text, strlen(text), &m) == NULL);
  return m;
}

/* ---- completions that count ---- */
typedef struct {
  counter_t *total;
  int calls;      /* how often this slot's completion ran */
  int error_kind; /* of the last call */
} slot_t;

static void on_slot(void *ud, em_error *e) {
  slot_t *s = ud;
  s->error_kind = em_error_kind(e);
  em_error_free(e);
  s->calls++;
  counter_add(s->total, 1);
}

static void on_slot_event(void *ud, em_error *e, em_event *ev) {
  slot_t *s = ud;
  s->error_kind = em_error_kind(e);
  em_error_free(e);
  em_event_free(ev);
  s->calls++;
  counter_add(s->total, 1);
}

static void on_slot_json(void *ud, em_error *e, char *json) {
  on_slot(ud, e);
  em_string_free(json);
}

static void never_called(void *ud, em_error *e) {
  (void)ud;
  em_error_free(e);
  fprintf(stderr, "a completion ran although its call failed\n");
  g_failures++;
}
static void never_called_event(void *ud, em_error *e, em_event *ev) {
  em_event_free(ev);
  never_called(ud, e);
}
static void never_called_json(void *ud, em_error *e, char *j) {
  em_string_free(j);
  never_called(ud, e);
}
static void never_called_method(void *ud, em_error *e, int32_t s, char *j) {
  (void)s;
  em_string_free(j);
  never_called(ud, e);
}

static void test_panic_barrier(void) {
  em_error *e = em_test_fail(true, NULL);
  CHECK(em_error_kind(e) == EM_ERROR_INTERNAL);
  CHECK(e && strstr(em_error_message(e), "panic") != NULL);
  em_error *copy = em_error_clone(e);
  em_error_free(e);
  CHECK(em_error_kind(copy) == EM_ERROR_INTERNAL);
  em_error_free(copy);
  e = em_test_fail(false, "boom");
  CHECK(em_error_kind(e) == INV && strcmp(em_error_message(e), "boom") == 0);
  CHECK(em_error_status(e) == 0);
  em_error_free(e);
  CHECK_ERR(em_test_fail(false, NULL), INV);
  CHECK_ERR(em_test_fail(false, "\xff\xfe"), INV); /* not UTF-8 */
  CHECK_ERR(em_test_log(3, NULL), INV);
}

static void test_null_errors_and_messages(void) {
  CHECK(em_error_kind(NULL) == EM_ERROR_NONE);
  CHECK(strcmp(em_error_message(NULL), "") == 0);
  CHECK(em_error_status(NULL) == 0);
  CHECK(em_error_clone(NULL) == NULL);
  em_error_free(NULL);
  CHECK(strcmp(em_error_kind_name(EM_ERROR_TIMEOUT), "Timeout") == 0);
  CHECK(strcmp(em_error_kind_name(999), "Unknown") == 0);
  em_string_free(NULL);

  em_message *m = NULL;
  CHECK_ERR(em_message_new(NULL, 3, &m), INV);
  CHECK(m == NULL);
  CHECK_ERR(em_message_new((const uint8_t *)"x", 1, NULL), INV);
  CHECK_OK(em_message_new(NULL, 0, &m)); /* an empty body */
  const uint8_t *data = (const uint8_t *)1;
  size_t len = 7;
  CHECK_OK(em_message_body(m, &data, &len));
  CHECK(len == 0);
  CHECK_ERR(em_message_body(NULL, &data, &len), INV);
  CHECK_ERR(em_message_body(m, NULL, &len), INV);
  CHECK_ERR(em_message_body(m, &data, NULL), INV);
  CHECK_ERR(em_message_set_body(NULL, (const uint8_t *)"a", 1), INV);
  CHECK_ERR(em_message_set_body(m, NULL, 1), INV);
  CHECK_OK(em_message_set_body(m, (const uint8_t *)"ab", 2));
  CHECK_ERR(em_message_set_message_id(NULL, "x"), INV);
  CHECK_ERR(em_message_set_correlation_id(NULL, "x"), INV);
  CHECK_ERR(em_message_set_user_id(NULL, "x"), INV);
  CHECK_ERR(em_message_set_content_type(NULL, "x"), INV);
  CHECK_ERR(em_message_set_content_encoding(NULL, "x"), INV);
  CHECK_ERR(em_message_set_expiry_time_utc(NULL, "x"), INV);
  CHECK_ERR(em_message_set_creation_time_utc(NULL, "x"), INV);
  CHECK_ERR(em_message_set_message_id(m, "\xc3\x28"), INV); /* invalid UTF-8 */
  CHECK_OK(em_message_set_message_id(m, "id"));
  CHECK_OK(em_message_set_message_id(m, NULL)); /* NULL clears */
  CHECK(em_message_message_id(m) == NULL);
  CHECK_ERR(em_message_set_property(NULL, "k", "v"), INV);
  CHECK_ERR(em_message_set_property(m, NULL, "v"), INV);
  CHECK_ERR(em_message_set_property(m, "", "v"), INV);
  CHECK_OK(em_message_set_property(m, "k", NULL)); /* a null-valued property */
  CHECK(em_message_has_property(m, "k"));
  CHECK(em_message_property(m, "k") == NULL);
  CHECK_ERR(em_message_remove_property(NULL, "k"), INV);
  CHECK_ERR(em_message_remove_property(m, NULL), INV);
  const char *k = NULL, *v = NULL;
  CHECK_ERR(em_message_property_at(NULL, 0, &k, &v), INV);
  CHECK_ERR(em_message_property_at(m, 0, NULL, &v), INV);
  CHECK_ERR(em_message_property_at(m, 0, &k, NULL), INV);
  CHECK_ERR(em_message_property_at(m, 1, &k, &v), INV); /* out of range */
  CHECK_OK(em_message_property_at(m, 0, &k, &v));
  CHECK(strcmp(k, "k") == 0 && v == NULL);
  CHECK(em_message_property(NULL, "k") == NULL);
  CHECK(em_message_property(m, NULL) == NULL);
  CHECK(!em_message_has_property(NULL, "k"));
  CHECK(!em_message_has_property(m, NULL));
  CHECK(em_message_property_count(NULL) == 0);
  CHECK(em_message_message_id(NULL) == NULL);
  CHECK(em_message_correlation_id(NULL) == NULL);
  CHECK(em_message_user_id(NULL) == NULL);
  CHECK(em_message_content_type(NULL) == NULL);
  CHECK(em_message_content_encoding(NULL) == NULL);
  CHECK(em_message_expiry_time_utc(NULL) == NULL);
  CHECK(em_message_creation_time_utc(NULL) == NULL);
  CHECK(em_message_input_name(NULL) == NULL);
  CHECK(em_message_connection_device_id(NULL) == NULL);
  CHECK(em_message_connection_module_id(NULL) == NULL);
  em_message_free(m);
  em_message_free(NULL);
}

static void test_null_events(void) {
  CHECK(em_event_kind(NULL) == EM_EVENT_NONE);
  CHECK(em_event_input_name(NULL) == NULL);
  CHECK(em_event_message(NULL) == NULL);
  CHECK_ERR(em_event_ack(NULL), INV);
  CHECK(em_event_desired_json(NULL) == NULL);
  int64_t v = 5;
  CHECK(!em_event_desired_version(NULL, &v) && v == 5);
  CHECK(em_event_method_name(NULL) == NULL);
  CHECK(em_event_method_payload_json(NULL) == NULL);
  CHECK(em_event_method_request_id(NULL) == NULL);
  CHECK(em_event_connection_status(NULL) == EM_STATUS_UNKNOWN);
  CHECK(em_event_status_reason(NULL) == EM_REASON_CONNECTION_OK);
  CHECK(em_event_retry_attempt(NULL) == 0);
  CHECK(em_event_retry_delay_ms(NULL) == 0);
  CHECK(em_event_topic(NULL) == NULL);
  const uint8_t *d;
  size_t len;
  uint8_t qos;
  CHECK_ERR(em_event_topic_payload(NULL, &d, &len, &qos), INV);
  em_event_free(NULL);
}

static void test_creation_errors(void) {
  em_client *c = (em_client *)1;
  em_client_options o;
  CHECK_ERR(em_client_options_init(NULL), INV);
  CHECK_OK(em_client_options_init(&o));
  CHECK(o.struct_size == sizeof o);
  CHECK(o.inflight == 100 && o.enable_inputs && o.keep_alive_secs == 60);
  CHECK_ERR(em_client_create_from_connection_string(NULL, &o, &c), INV);
  CHECK_ERR(em_client_create_from_connection_string("HostName=h;DeviceId=d", &o, NULL), INV);
  CHECK_ERR(em_client_create_from_connection_string("not a connection string", &o, &c),
            EM_ERROR_CONFIGURATION);
  CHECK(c == (em_client *)1); /* untouched on failure */
  o.struct_size = 8;
  char *cs = hub_connection_string(&hub, "misuse");
  CHECK_ERR(em_client_create_from_connection_string(cs, &o, &c), INV);
  CHECK_OK(em_client_options_init(&o));
  o.transport = 7;
  CHECK_ERR(em_client_create_from_connection_string(cs, &o, &c), INV);
  CHECK_OK(em_client_options_init(&o));
  o.backoff_jitter = 3.0;
  CHECK_ERR(em_client_create_from_connection_string(cs, &o, &c), INV);
  free(cs);
  CHECK(c == (em_client *)1);
  /* No IoT Edge environment in this process. */
  unsetenv("IOTEDGE_MODULEID");
  unsetenv("EdgeHubConnectionString");
  CHECK_ERR(em_client_create_from_environment(NULL, &c), EM_ERROR_CONFIGURATION);
  CHECK_ERR(em_client_create_from_environment(NULL, NULL), INV);
  em_broker_options b;
  memset(&b, 0, sizeof b);
  CHECK_ERR(em_client_create_for_broker(NULL, NULL, &c), INV);
  CHECK_ERR(em_client_create_for_broker(&b, NULL, &c), INV); /* host NULL */
  b.host = "127.0.0.1";
  CHECK_ERR(em_client_create_for_broker(&b, NULL, &c), INV); /* client_id NULL */
  b.client_id = "x";
  CHECK_ERR(em_client_create_for_broker(&b, NULL, NULL), INV);
  CHECK(c == (em_client *)1);
}

/* Every client function with `c` as the client (NULL, a bogus or freed handle, a closed
 * client): all must fail with `kind` and never call a completion. */
static void all_client_calls_fail(em_client *c, int kind) {
  slot_t s = {NULL, 0, 0};
  em_message *m = text_message("x");
  const em_message *batch[1] = {m};
  em_event *ev = (em_event *)1;
  char *json = (char *)1;
  int32_t status = -1;
  int64_t version = -7;
  CHECK_ERR(em_client_connect(c, 1000), kind);
  CHECK_ERR(em_client_connect_async(c, never_called, &s), kind);
  CHECK_ERR(em_client_send_to_output(c, "o", m, 1000), kind);
  CHECK_ERR(em_client_send_to_output_async(c, "o", m, never_called, &s), kind);
  CHECK_ERR(em_client_send_telemetry(c, m, 1000), kind);
  CHECK_ERR(em_client_send_telemetry_async(c, m, never_called, &s), kind);
  CHECK_ERR(em_client_send_batch_to_output(c, "o", batch, 1, 1000, NULL), kind);
  CHECK_ERR(em_client_send_batch_to_output_async(c, "o", batch, 1, never_called, &s), kind);
  CHECK_ERR(em_client_next_event(c, 10, &ev), kind);
  CHECK(ev == (em_event *)1);
  CHECK_ERR(em_client_next_event(c, 0, &ev), kind);
  CHECK_ERR(em_client_next_event_async(c, never_called_event, &s), kind);
  CHECK_ERR(em_client_respond_method(c, "1", 200, NULL, 1000), kind);
  CHECK_ERR(em_client_respond_method_async(c, "1", 200, NULL, never_called, &s), kind);
  CHECK_ERR(em_client_get_twin(c, 1000, &json), kind);
  CHECK(json == (char *)1);
  CHECK_ERR(em_client_get_twin_async(c, never_called_json, &s), kind);
  CHECK_ERR(em_client_patch_reported(c, "{}", 1000, &version), kind);
  CHECK(version == -7);
  CHECK_ERR(em_client_patch_reported_async(c, "{}", never_called, &s), kind);
  CHECK_ERR(em_client_invoke_method(c, "d", "m", "x", NULL, 5, 0, &status, &json), kind);
  CHECK(status == -1);
  CHECK_ERR(em_client_invoke_method_async(c, "d", "m", "x", NULL, 5, 0, never_called_method, &s),
            kind);
  CHECK_ERR(em_client_publish(c, "t", (const uint8_t *)"p", 1, 1, 1000), kind);
  CHECK_ERR(em_client_publish_async(c, "t", (const uint8_t *)"p", 1, 1, never_called, &s), kind);
  CHECK_ERR(em_client_subscribe(c, "t/#", 1, 1000), kind);
  CHECK_ERR(em_client_subscribe_async(c, "t/#", 1, never_called, &s), kind);
  CHECK_ERR(em_client_unsubscribe(c, "t/#", 1000), kind);
  CHECK_ERR(em_client_unsubscribe_async(c, "t/#", never_called, &s), kind);
  em_connection_status st = EM_STATUS_UNKNOWN;
  size_t depth = 3;
  uint64_t age = 3;
  CHECK_ERR(em_client_connection_status(c, &st), kind);
  CHECK_ERR(em_client_queue_stats(c, &depth, &age), kind);
  CHECK(depth == 3 && age == 3);
  em_message_free(m);
}

static void test_null_arguments_on_live_client(em_client *c) {
  em_message *m = text_message("x");
  const em_message *batch[2] = {m, NULL};
  slot_t s = {NULL, 0, 0};
  int32_t status;
  char *json;
  CHECK_ERR(em_client_send_to_output(c, NULL, m, 1000), INV);
  CHECK_ERR(em_client_send_to_output(c, "o", NULL, 1000), INV);
  CHECK_ERR(em_client_send_to_output(c, "\xff", m, 1000), INV);
  CHECK_ERR(em_client_send_to_output_async(c, NULL, m, never_called, &s), INV);
  CHECK_ERR(em_client_send_to_output_async(c, "o", NULL, never_called, &s), INV);
  CHECK_ERR(em_client_send_to_output_async(c, "o", m, NULL, &s), INV);
  CHECK_ERR(em_client_send_telemetry(c, NULL, 1000), INV);
  CHECK_ERR(em_client_send_telemetry_async(c, NULL, never_called, &s), INV);
  CHECK_ERR(em_client_send_telemetry_async(c, m, NULL, &s), INV);
  CHECK_ERR(em_client_send_batch_to_output(c, NULL, batch, 1, 1000, NULL), INV);
  CHECK_ERR(em_client_send_batch_to_output(c, "o", NULL, 1, 1000, NULL), INV);
  CHECK_ERR(em_client_send_batch_to_output(c, "o", batch, 0, 1000, NULL), INV);
  CHECK_ERR(em_client_send_batch_to_output(c, "o", batch, 2, 1000, NULL), INV); /* NULL item */
  CHECK_ERR(em_client_send_batch_to_output_async(c, "o", batch, 1, NULL, &s), INV);
  CHECK_ERR(em_client_send_batch_to_output_async(c, "o", batch, 2, never_called, &s), INV);
  CHECK_ERR(em_client_connect_async(c, NULL, &s), INV);
  CHECK_ERR(em_client_close_async(c, NULL, &s), INV);
  CHECK_ERR(em_client_next_event(c, 0, NULL), INV);
  CHECK_ERR(em_client_next_event_async(c, NULL, &s), INV);
  CHECK_ERR(em_client_respond_method(c, NULL, 200, NULL, 1000), INV);
  CHECK_ERR(em_client_respond_method(c, "1", 200, "{bad json", 1000), INV);
  CHECK_ERR(em_client_respond_method_async(c, NULL, 200, NULL, never_called, &s), INV);
  CHECK_ERR(em_client_respond_method_async(c, "1", 200, NULL, NULL, &s), INV);
  CHECK_ERR(em_client_get_twin(c, 1000, NULL), INV);
  CHECK_ERR(em_client_get_twin_async(c, NULL, &s), INV);
  CHECK_ERR(em_client_patch_reported(c, NULL, 1000, NULL), INV);
  CHECK_ERR(em_client_patch_reported_async(c, NULL, never_called, &s), INV);
  CHECK_ERR(em_client_patch_reported_async(c, "{}", NULL, &s), INV);
  CHECK_ERR(em_client_invoke_method(c, NULL, "m", "x", NULL, 5, 0, &status, &json), INV);
  CHECK_ERR(em_client_invoke_method(c, "d", "m", NULL, NULL, 5, 0, &status, &json), INV);
  CHECK_ERR(em_client_invoke_method(c, "d", "m", "x", NULL, 5, 0, NULL, &json), INV);
  CHECK_ERR(em_client_invoke_method(c, "d", "m", "x", NULL, 5, 0, &status, NULL), INV);
  CHECK_ERR(em_client_invoke_method_async(c, NULL, "m", "x", NULL, 5, 0, never_called_method, &s),
            INV);
  CHECK_ERR(em_client_invoke_method_async(c, "d", "m", "x", NULL, 5, 0, NULL, &s), INV);
  CHECK_ERR(em_client_publish(c, NULL, (const uint8_t *)"p", 1, 1, 1000), INV);
  CHECK_ERR(em_client_publish(c, "t", NULL, 1, 1, 1000), INV);
  CHECK_ERR(em_client_publish_async(c, "t", (const uint8_t *)"p", 1, 1, NULL, &s), INV);
  CHECK_ERR(em_client_publish_async(c, NULL, (const uint8_t *)"p", 1, 1, never_called, &s), INV);
  CHECK_ERR(em_client_subscribe(c, NULL, 1, 1000), INV);
  CHECK_ERR(em_client_subscribe_async(c, NULL, 1, never_called, &s), INV);
  CHECK_ERR(em_client_subscribe_async(c, "t", 1, NULL, &s), INV);
  CHECK_ERR(em_client_unsubscribe(c, NULL, 1000), INV);
  CHECK_ERR(em_client_unsubscribe_async(c, NULL, never_called, &s), INV);
  CHECK_ERR(em_client_unsubscribe_async(c, "t", NULL, &s), INV);
  size_t depth;
  uint64_t age;
  CHECK_ERR(em_client_connection_status(c, NULL), INV);
  CHECK_ERR(em_client_queue_stats(c, NULL, &age), INV);
  CHECK_ERR(em_client_queue_stats(c, &depth, NULL), INV);
  em_message_free(m);
}

/* Each of N async sends calls back exactly once with its own user_data. */
static void test_completions_exactly_once(em_client *c) {
  enum { N = 40 };
  counter_t total;
  counter_init(&total);
  slot_t slots[N];
  em_message *m = text_message("count me");
  for (int i = 0; i < N; i++) {
    slots[i].total = &total;
    slots[i].calls = 0;
    slots[i].error_kind = -1;
    CHECK_OK(em_client_send_to_output_async(c, "unrouted", m, on_slot, &slots[i]));
  }
  em_message_free(m);
  CHECK(counter_wait(&total, N, 30000) == N);
  sleep_ms(200); /* a second call would show up here */
  for (int i = 0; i < N; i++) {
    CHECK(slots[i].calls == 1);
    CHECK(slots[i].error_kind == EM_ERROR_NONE);
  }
  CHECK(counter_get(&total) == N);
  counter_destroy(&total);
}

/* A blocking call from a completion is refused (it would stall the library's threads). */
typedef struct {
  em_client *client;
  counter_t done;
  int blocking_kind;
  int async_kind;
  slot_t nested;
} reentry_ctx;

static void on_reentry(void *ud, em_error *e, char *json) {
  reentry_ctx *r = ud;
  em_error_free(e);
  em_string_free(json);
  em_message *m = text_message("from a callback");
  em_error *be = em_client_send_to_output(r->client, "o", m, 1000);
  r->blocking_kind = em_error_kind(be);
  em_error_free(be);
  em_error *ae = em_client_send_to_output_async(r->client, "unrouted", m, on_slot, &r->nested);
  r->async_kind = em_error_kind(ae);
  em_error_free(ae);
  em_message_free(m);
  counter_add(&r->done, 1);
}

static void test_reentry(em_client *c) {
  reentry_ctx r;
  memset(&r, 0, sizeof r);
  r.client = c;
  counter_init(&r.done);
  counter_t nested_total;
  counter_init(&nested_total);
  r.nested.total = &nested_total;
  CHECK_OK(em_client_get_twin_async(c, on_reentry, &r));
  CHECK(counter_wait(&r.done, 1, 20000) == 1);
  CHECK(r.blocking_kind == INV);
  CHECK(r.async_kind == EM_ERROR_NONE); /* async calls are fine from callbacks */
  CHECK(counter_wait(&nested_total, 1, 20000) == 1);
  CHECK(r.nested.calls == 1 && r.nested.error_kind == EM_ERROR_NONE);
  counter_destroy(&r.done);
  counter_destroy(&nested_total);
}

/* Freeing a client from its own completion: no deadlock; the handle is dead at once. */
typedef struct {
  em_client *client;
  counter_t done;
} free_ctx;

static void on_free_me(void *ud, em_error *e) {
  free_ctx *f = ud;
  em_error_free(e);
  em_client_free(f->client);
  counter_add(&f->done, 1);
}

static void test_free_from_callback(void) {
  free_ctx f;
  f.client = hub_client(&hub, "misuse");
  counter_init(&f.done);
  CHECK_OK(em_client_patch_reported_async(f.client, "{\"x\":1}", on_free_me, &f));
  CHECK(counter_wait(&f.done, 1, 20000) == 1);
  em_connection_status st;
  CHECK_ERR(em_client_connection_status(f.client, &st), INV);
  counter_destroy(&f.done);
  sleep_ms(1500); /* the close finishes on a library helper thread */
}

/* em_client_free with operations pending and unread events: every completion has run (once)
 * when free returns; unread events and their messages are released. */
static void test_free_with_pending(em_client *sender) {
  em_client *c = hub_client(&hub, "misuse");
  /* Three input messages wait unread in c's queue. */
  for (int i = 0; i < 3; i++) {
    em_message *m = text_message("pending");
    CHECK_OK(em_client_send_to_output(sender, "toMisuse", m, 20000));
    em_message_free(m);
  }
  /* Take one event and keep it past the free. */
  em_event *kept = NULL;
  long long deadline = now_ms() + 20000;
  while (!kept && now_ms() < deadline) {
    CHECK_OK(em_client_next_event(c, 500, &kept));
    if (kept && em_event_kind(kept) != EM_EVENT_INPUT_MESSAGE) {
      em_event_free(kept);
      kept = NULL;
    }
  }
  CHECK(kept != NULL);
  sleep_ms(300); /* let the other two arrive */

  enum { N = 30 };
  counter_t total;
  counter_init(&total);
  slot_t sends[N], waits[3], twin;
  em_message *m = text_message("in flight at free");
  for (int i = 0; i < N; i++) {
    sends[i] = (slot_t){&total, 0, -1};
    CHECK_OK(em_client_send_to_output_async(c, "unrouted", m, on_slot, &sends[i]));
  }
  em_message_free(m);
  twin = (slot_t){&total, 0, -1};
  CHECK_OK(em_client_get_twin_async(c, on_slot_json, &twin));
  /* More waiters than queued events: at least one is still pending at free. */
  for (int i = 0; i < 3; i++) {
    waits[i] = (slot_t){&total, 0, -1};
    CHECK_OK(em_client_next_event_async(c, on_slot_event, &waits[i]));
  }
  em_client_free(c);
  /* No waiting: everything must have completed before em_client_free returned. */
  CHECK(counter_get(&total) == N + 4);
  int closed = 0;
  for (int i = 0; i < N; i++) {
    CHECK(sends[i].calls == 1);
    CHECK(sends[i].error_kind == EM_ERROR_NONE || sends[i].error_kind == EM_ERROR_CLOSED);
  }
  CHECK(twin.calls == 1);
  for (int i = 0; i < 3; i++) {
    CHECK(waits[i].calls == 1);
    if (waits[i].error_kind == EM_ERROR_CLOSED) closed++;
  }
  CHECK(closed >= 1);
  sleep_ms(200);
  CHECK(counter_get(&total) == N + 4); /* and nothing after */
  counter_destroy(&total);

  /* The kept event outlives its client: reading, acking and freeing it is fine. */
  CHECK(em_event_message(kept) != NULL);
  CHECK_OK(em_event_ack(kept));
  em_event_free(kept);

  all_client_calls_fail(c, INV); /* freed handle */
  em_client_free(c);             /* double free is ignored */
}

static void test_use_after_close(void) {
  em_client *c = hub_client(&hub, "misuse");
  counter_t total;
  counter_init(&total);
  slot_t pending = {&total, 0, -1}, closing = {&total, 0, -1};
  /* Drain the connection-status events of the connect: the waiter below must find nothing. */
  for (;;) {
    em_event *ev = NULL;
    CHECK_OK(em_client_next_event(c, 300, &ev));
    if (!ev) break;
    em_event_free(ev);
  }
  CHECK_OK(em_client_next_event_async(c, on_slot_event, &pending));
  CHECK_OK(em_client_close_async(c, on_slot, &closing));
  CHECK(counter_wait(&total, 2, 20000) == 2);
  CHECK(pending.calls == 1 && pending.error_kind == EM_ERROR_CLOSED);
  CHECK(closing.calls == 1 && closing.error_kind == EM_ERROR_NONE);
  all_client_calls_fail(c, EM_ERROR_CLOSED);
  CHECK_OK(em_client_close(c, 1000)); /* closing again is fine */
  em_client_free(c);
  counter_destroy(&total);
}

int main(void) {
  test_panic_barrier();
  test_null_errors_and_messages();
  test_null_events();
  all_client_calls_fail(NULL, INV);
  all_client_calls_fail((em_client *)(uintptr_t)0xdead0, INV);
  em_client_free(NULL);
  em_client_free((em_client *)(uintptr_t)0xdead0);

  hub_start(&hub, test_manifest());
  test_creation_errors();
  em_client *sender = hub_client(&hub, "sender");
  test_null_arguments_on_live_client(sender);
  test_completions_exactly_once(sender);
  test_reentry(sender);
  test_free_from_callback();
  test_free_with_pending(sender);
  test_use_after_close();
  em_client_free(sender);
  hub_stop(&hub);
  return test_summary("test_misuse");
}
