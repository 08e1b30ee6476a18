/* fuzz_pool_intake: the nudges the worker pool reads on its tasks endpoint (worker/pool.c:
 * pool_intake), which anyone who can reach [zmq] tasks may send, in any frame count and length.
 *
 * The input is a series of messages (fuzz_message: 1..4 frames of any length), sent over a real
 * inproc PUSH to the pool's PULL.  The pool is the real one minus its threads: a real store holding three tasks
 * (two queued, one cancelled) and its PUB socket, no slots (so nothing is claimed).  A task id
 * frame "00000000000000000000000000000000" + k (k < 3) is replaced by the id of stored task k,
 * so the fuzzer reaches the paths of tasks that exist.  The project namespace keeps history
 * (history_size 3, history_ttl 1 s, pruned every FUZZ_PRUNE_RUNS runs so the store stays
 * small) and presence.  What must hold: the pool reads every message, whatever its shape, and
 * all it publishes is [client id][task event JSON], one of the input's publish or signal
 * messages ([publish|signal][topic][payload], a topic of 1..64 bytes) as it was, or, for a
 * publish to a channel of project, a JSON object with its "offset" (1 or more) and "epoch" (16
 * hex digits), or a presence event of a presence update ([presence][relay id][update]) on a
 * channel's topic. */
#include "fuzz_store.h"

#include "worker/pool.c"

static struct config cfg;
static struct pool pool;
static void *sender, *listener;
static char ids[FUZZ_TASKS][TOKEN_ID_SIZE];

#define FUZZ_PRUNE_RUNS 1000 /* runs between two prunes of the history rows */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup(&cfg);
    struct config_namespace *project = (struct config_namespace *)config_namespace_find(
        &cfg, "project", strlen("project"));
    if (!project)
        abort();
    project->history_size = 3;
    project->history_ttl = 1;
    project->presence = 1; /* presence updates of project: channels reach the store and publish */
    project->presence_events = 1;
    pool.cfg = &cfg;
    if (!(pool.history = history_new(&cfg)))
        abort();
    pool.store = fuzz_store_open(fuzz_scratch("pool"), ids);
    snprintf(pool.worker_id, sizeof pool.worker_id, "%s", "feedfacefeedfacefeedfacefeedface");
    snprintf(pool.host, sizeof pool.host, "fuzz");
    pool.lease_valid_until_ms = INT64_MAX;
    int unlimited = 0;
    pool.zmq = zmq_ctx_new();
    if (!pool.zmq)
        abort();
    pool.tasks = zmq_socket(pool.zmq, ZMQ_PULL);
    pool.publisher = zmq_socket(pool.zmq, ZMQ_PUB);
    sender = zmq_socket(pool.zmq, ZMQ_PUSH);
    listener = zmq_socket(pool.zmq, ZMQ_SUB);
    if (!pool.tasks || !pool.publisher || !sender || !listener ||
        zmq_setsockopt(pool.tasks, ZMQ_RCVHWM, &unlimited, sizeof unlimited) != 0 ||
        zmq_setsockopt(sender, ZMQ_SNDHWM, &unlimited, sizeof unlimited) != 0 ||
        zmq_setsockopt(listener, ZMQ_SUBSCRIBE, "", 0) != 0 ||
        zmq_bind(pool.tasks, "inproc://fuzz-pool-tasks") != 0 ||
        zmq_connect(sender, "inproc://fuzz-pool-tasks") != 0 ||
        zmq_bind(pool.publisher, "inproc://fuzz-pool-events") != 0 ||
        zmq_connect(listener, "inproc://fuzz-pool-events") != 0)
        abort();
    pool.presence = presence_new(&cfg, pool.store, pool.publisher, NULL);
    if (!pool.presence)
        abort();
    return 0;
}

/* Every message the pool published: two frames, a client id and a task event, or at most
 * `publishes` messages of a publish verb, of which at most `signals` (a browser's, never
 * stored) go to a channel with history without an offset. */
static void
check_published(int publishes, int signals)
{
    for (;;) {
        zmq_msg_t frames[3];
        int count = pool_receive(listener, frames, 3);
        if (count == 0)
            return;
        FUZZ_CHECK(count == 2);
        json_error_t error;
        json_t *event = json_loadb(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), 0, &error);
        int task_event = zmq_msg_size(&frames[0]) == TOKEN_ID_SIZE - 1 &&
                         memcmp(zmq_msg_data(&frames[0]), FUZZ_CLIENT, TOKEN_ID_SIZE - 1) == 0 &&
                         event && json_is_string(json_object_get(event, "event"));
        const char *type = json_string_value(json_object_get(event, "type"));
        const char *channel = json_string_value(json_object_get(event, "channel"));
        int presence_event = type && strcmp(type, "presence") == 0 && channel &&
                             strncmp(channel, "project:", 8) == 0 &&
                             zmq_msg_size(&frames[0]) == strlen(channel) &&
                             memcmp(zmq_msg_data(&frames[0]), channel, strlen(channel)) == 0;
        json_decref(event);
        if (!task_event && !presence_event) {
            FUZZ_CHECK(publishes-- > 0);
            FUZZ_CHECK(zmq_msg_size(&frames[0]) >= 1 &&
                       zmq_msg_size(&frames[0]) <= CONFIG_CHANNEL_NAME_LIMIT);
            struct channel parsed;
            if (channel_parse(&cfg, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]),
                              &parsed) == 0 &&
                parsed.ns->history_size > 0) {
                json_t *message =
                    json_loadb(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), 0, &error);
                const char *epoch = json_string_value(json_object_get(message, "epoch"));
                if (!json_object_get(message, "offset")) {
                    FUZZ_CHECK(signals-- > 0); /* a signal, as it came */
                } else {
                    FUZZ_CHECK(json_is_object(message));
                    FUZZ_CHECK(json_integer_value(json_object_get(message, "offset")) >= 1);
                    FUZZ_CHECK(epoch && strlen(epoch) == 16 &&
                               strspn(epoch, "0123456789abcdef") == 16);
                }
                json_decref(message);
            }
        }
        pool_close_frames(frames, count);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char placeholder[] = "0000000000000000000000000000000";
    struct fuzz_input in = {data, size};
    const uint8_t *frame[FUZZ_FRAMES_MAX];
    size_t len[FUZZ_FRAMES_MAX];
    int frames, publishes = 0, signals = 0;
    while ((frames = fuzz_message(&in, frame, len)) > 0) {
        int signal = frames == 3 && len[0] == strlen(PROTOCOL_VERB_SIGNAL) &&
                     memcmp(frame[0], PROTOCOL_VERB_SIGNAL, len[0]) == 0;
        signals += signal;
        publishes += signal || (frames == 3 && len[0] == strlen(PROTOCOL_VERB_PUBLISH) &&
                                memcmp(frame[0], PROTOCOL_VERB_PUBLISH, len[0]) == 0);
        for (int f = 0; f < frames; f++) {
            const void *bytes = frame[f];
            if (len[f] == TOKEN_ID_SIZE - 1 && memcmp(bytes, placeholder, len[f] - 1) == 0 &&
                frame[f][len[f] - 1] >= '0' && frame[f][len[f] - 1] < '0' + FUZZ_TASKS)
                bytes = ids[frame[f][len[f] - 1] - '0'];
            if (zmq_send(sender, bytes, len[f], f + 1 < frames ? ZMQ_SNDMORE : 0) != (int)len[f])
                abort();
        }
    }
    /* As pool_run does: intake while the socket says more is waiting. */
    for (int turns = 0;; turns++) {
        FUZZ_CHECK(turns < 100000);
        int events = 0;
        size_t events_size = sizeof events;
        if (zmq_getsockopt(pool.tasks, ZMQ_EVENTS, &events, &events_size) != 0)
            abort();
        if (!(events & ZMQ_POLLIN))
            break;
        pool_intake(&pool);
    }
    check_published(publishes, signals);
    static unsigned runs;
    if (++runs % FUZZ_PRUNE_RUNS == 0)
        history_prune(pool.store, 1);
    return 0;
}
