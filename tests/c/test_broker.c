/* Broker mode against a real mosquitto on a free port: subscribe, publish (blocking and
 * async), topic-message events, unsubscribe. Exits 77 (CTest: skipped) without mosquitto.
 * mosquitto is started by the harness (locally, or by cross/hostctl.py on the host). */
#include <string.h>

#include "harness.h"

static em_event *wait_topic(em_client *c, int ms) {
  long long deadline = now_ms() + ms;
  while (now_ms() < deadline) {
    em_event *ev = NULL;
    em_error *e = em_client_next_event(c, 100, &ev);
    if (e) {
      em_error_free(e);
      return NULL;
    }
    if (!ev) continue;
    if (em_event_kind(ev) == EM_EVENT_TOPIC_MESSAGE) return ev;
    em_event_free(ev);
  }
  return NULL;
}

static void on_done(void *ud, em_error *e) {
  CHECK(e == NULL);
  em_error_free(e);
  counter_add(ud, 1);
}

int main(void) {
  broker_t broker;
  if (!broker_start(&broker)) {
    printf("test_broker: no mosquitto, skipped\n");
    return 77;
  }
  int port = broker.port;

  em_broker_options b;
  memset(&b, 0, sizeof b);
  b.host = "127.0.0.1";
  b.port = (uint16_t)port;
  b.client_id = "c-broker-test";
  em_client_options o;
  CHECK_OK(em_client_options_init(&o));
  o.connect_timeout_ms = 10000;
  em_client *c = NULL;
  CHECK_OK(em_client_create_for_broker(&b, &o, &c));
  REQUIRE(c != NULL);
  CHECK_OK(em_client_connect(c, 20000));
  CHECK_OK(em_client_subscribe(c, "c/test/#", 1, 10000));
  CHECK_ERR(em_client_subscribe(c, "c/#/x", 1, 10000), EM_ERROR_INVALID_ARGUMENT);
  CHECK_ERR(em_client_publish(c, "c/+/x", (const uint8_t *)"p", 1, 1, 10000),
            EM_ERROR_INVALID_ARGUMENT);
  CHECK_ERR(em_client_publish(c, "c/test/1", (const uint8_t *)"p", 1, 2, 10000),
            EM_ERROR_INVALID_ARGUMENT); /* QoS 2 */
  CHECK_OK(em_client_publish(c, "c/test/1", (const uint8_t *)"hello\0bin", 9, 1, 10000));
  em_event *ev = wait_topic(c, 10000);
  CHECK(ev != NULL);
  if (ev) {
    CHECK(strcmp(em_event_topic(ev), "c/test/1") == 0);
    const uint8_t *data = NULL;
    size_t len = 0;
    uint8_t qos = 9;
    CHECK_OK(em_event_topic_payload(ev, &data, &len, &qos));
    CHECK(len == 9 && memcmp(data, "hello\0bin", 9) == 0);
    CHECK(qos == 1);
    CHECK(em_event_input_name(ev) == NULL);
    em_event_free(ev);
  }
  counter_t done;
  counter_init(&done);
  CHECK_OK(em_client_publish_async(c, "c/test/2", (const uint8_t *)"a", 1, 0, on_done, &done));
  CHECK(counter_wait(&done, 1, 10000) == 1);
  ev = wait_topic(c, 10000);
  CHECK(ev && strcmp(em_event_topic(ev), "c/test/2") == 0);
  em_event_free(ev);
  CHECK_OK(em_client_unsubscribe_async(c, "c/test/#", on_done, &done));
  CHECK(counter_wait(&done, 2, 10000) == 2);
  CHECK_OK(em_client_publish(c, "c/test/3", (const uint8_t *)"b", 1, 1, 10000));
  CHECK(wait_topic(c, 500) == NULL); /* unsubscribed */
  CHECK_OK(em_client_subscribe_async(c, "c/again", 0, on_done, &done));
  CHECK(counter_wait(&done, 3, 10000) == 3);
  CHECK_OK(em_client_unsubscribe(c, "c/again", 10000));
  /* A broker client has no module identity. */
  char *json = NULL;
  CHECK_ERR(em_client_get_twin(c, 1000, &json), EM_ERROR_INVALID_ARGUMENT);
  em_client_free(c);
  counter_destroy(&done);

  broker_stop(&broker);
  return test_summary("test_broker");
}
