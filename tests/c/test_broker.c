/* Broker mode against a real mosquitto on a free port: subscribe, publish (blocking and
 * async), topic-message events, unsubscribe. Exits 77 (CTest: skipped) without mosquitto. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

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

static bool port_open(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  bool ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
  close(s);
  return ok;
}

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
  const char *bin = mosquitto_binary();
  if (!bin) {
    printf("test_broker: mosquitto not installed, skipped\n");
    return 77;
  }
  char dir[] = "/tmp/em-mosq-XXXXXX";
  REQUIRE(mkdtemp(dir));
  char conf[300];
  snprintf(conf, sizeof conf, "%s/mosquitto.conf", dir);
  int port = free_port();
  FILE *f = fopen(conf, "w");
  REQUIRE(f);
  fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port);
  if (geteuid() == 0) fprintf(f, "user root\n"); /* else mosquitto drops to its own user */
  fclose(f);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execl(bin, bin, "-c", conf, (char *)NULL);
    _exit(127);
  }
  long long deadline = now_ms() + 10000;
  while (!port_open(port) && now_ms() < deadline) sleep_ms(50);
  REQUIRE(port_open(port));

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

  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  unlink(conf);
  rmdir(dir);
  return test_summary("test_broker");
}
