/* Several threads share one client: blocking senders, an async sender, a thread reading the
 * client's state, while the receiver checks every message arrived exactly once. */
#include <string.h>

#include "harness.h"

enum { THREADS = 4, ASYNC_THREAD = THREADS, ALL = THREADS + 1 };

static hub_t hub;
static int per_thread = 100;
static em_client *stress;
static volatile int stop_state_reader = 0;
static int send_errors[ALL];

static void *blocking_sender(void *arg) {
  int t = (int)(intptr_t)arg;
  char text[64], seq[16], th[16];
  for (int i = 0; i < per_thread; i++) {
    snprintf(text, sizeof text, "stress %d/%d", t, i);
    snprintf(seq, sizeof seq, "%d", i);
    snprintf(th, sizeof th, "%d", t);
    em_message *m = NULL;
    REQUIRE(em_message_new((const uint8_t *)text, strlen(text), &m) == NULL);
    CHECK_OK(em_message_set_property(m, "thread", th));
    CHECK_OK(em_message_set_property(m, "seq", seq));
    em_error *e = em_client_send_to_output(stress, "out", m, 60000);
    if (e) {
      fprintf(stderr, "send %s: %s\n", text, em_error_message(e));
      send_errors[t]++;
      em_error_free(e);
    }
    em_message_free(m);
  }
  return NULL;
}

static counter_t async_done;
static int async_errors;
static pthread_mutex_t async_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_sent(void *ud, em_error *e) {
  (void)ud;
  if (e) {
    pthread_mutex_lock(&async_mu);
    async_errors++;
    pthread_mutex_unlock(&async_mu);
    fprintf(stderr, "async send: %s\n", em_error_message(e));
    em_error_free(e);
  }
  counter_add(&async_done, 1);
}

static void *async_sender(void *arg) {
  (void)arg;
  char text[64], seq[16], th[16];
  snprintf(th, sizeof th, "%d", ASYNC_THREAD);
  for (int i = 0; i < per_thread; i++) {
    snprintf(text, sizeof text, "stress %d/%d", ASYNC_THREAD, i);
    snprintf(seq, sizeof seq, "%d", i);
    em_message *m = NULL;
    REQUIRE(em_message_new((const uint8_t *)text, strlen(text), &m) == NULL);
    CHECK_OK(em_message_set_property(m, "thread", th));
    CHECK_OK(em_message_set_property(m, "seq", seq));
    CHECK_OK(em_client_send_to_output_async(stress, "out", m, on_sent, NULL));
    em_message_free(m);
  }
  return NULL;
}

static void *state_reader(void *arg) {
  (void)arg;
  int reads = 0;
  while (!stop_state_reader) {
    em_connection_status s;
    size_t depth;
    uint64_t age;
    CHECK_OK(em_client_connection_status(stress, &s));
    CHECK_OK(em_client_queue_stats(stress, &depth, &age));
    reads++;
    sleep_ms(5);
  }
  CHECK(reads > 0);
  return NULL;
}

int main(void) {
  const char *n = getenv("EM_STRESS_PER_THREAD");
  if (n) per_thread = atoi(n);
  REQUIRE(per_thread > 0 && per_thread <= 100000);
  counter_init(&async_done);
  hub_start(&hub, test_manifest());
  em_client *receiver = hub_client(&hub, "receiver");
  stress = hub_client(&hub, "stress");

  pthread_t threads[ALL], reader;
  long long t0 = now_ms();
  REQUIRE(pthread_create(&reader, NULL, state_reader, NULL) == 0);
  for (int t = 0; t < THREADS; t++)
    REQUIRE(pthread_create(&threads[t], NULL, blocking_sender, (void *)(intptr_t)t) == 0);
  REQUIRE(pthread_create(&threads[ASYNC_THREAD], NULL, async_sender, NULL) == 0);

  /* Receive on the main thread meanwhile. */
  int total = ALL * per_thread;
  unsigned char *seen = calloc((size_t)total, 1);
  int unique = 0, duplicates = 0, malformed = 0;
  long long deadline = now_ms() + 120000;
  while (unique < total && now_ms() < deadline) {
    em_event *ev = NULL;
    em_error *e = em_client_next_event(receiver, 500, &ev);
    if (e) {
      fprintf(stderr, "receive: %s\n", em_error_message(e));
      em_error_free(e);
      break;
    }
    if (!ev) continue;
    if (em_event_kind(ev) == EM_EVENT_INPUT_MESSAGE) {
      const em_message *m = em_event_message(ev);
      const char *th = em_message_property(m, "thread");
      const char *seq = em_message_property(m, "seq");
      int t = th ? atoi(th) : -1, i = seq ? atoi(seq) : -1;
      if (t < 0 || t >= ALL || i < 0 || i >= per_thread ||
          strcmp(em_event_input_name(ev), "stress") != 0) {
        malformed++;
      } else if (seen[t * per_thread + i]) {
        duplicates++;
      } else {
        seen[t * per_thread + i] = 1;
        unique++;
      }
      CHECK_OK(em_event_ack(ev));
    }
    em_event_free(ev);
  }
  for (int t = 0; t < ALL; t++) pthread_join(threads[t], NULL);
  CHECK(counter_wait(&async_done, per_thread, 60000) == per_thread);
  long long elapsed = now_ms() - t0;
  stop_state_reader = 1;
  pthread_join(reader, NULL);

  int errors = async_errors;
  for (int t = 0; t < THREADS; t++) errors += send_errors[t];
  CHECK(errors == 0);
  CHECK(unique == total);
  CHECK(duplicates == 0);
  CHECK(malformed == 0);
  printf("stress: %d messages from %d threads in %lld ms (%d unique, %d duplicates)\n", total,
         ALL, elapsed, unique, duplicates);
  free(seen);

  em_client_free(stress);
  em_client_free(receiver);
  hub_stop(&hub);
  counter_destroy(&async_done);
  return test_summary("test_stress");
}
