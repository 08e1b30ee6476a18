/* protocol.h: the ZeroMQ wire between handlers, workers and relays, and the event messages.
 *
 * Tasks socket (handler PUSH -> worker PULL), two frames: [verb][task id], verb one of
 * PROTOCOL_VERB_SUBMIT, PROTOCOL_VERB_CANCEL and PROTOCOL_VERB_RETRY.  The store is the queue;
 * these are nudges.  Three frames [PROTOCOL_VERB_PUBLISH][topic][payload] are a message of
 * POST /api/publish, which the worker publishes on the events wire as it is (a PUSH queues
 * until the worker is there, where a PUB of the handler's would drop its first messages).
 *
 * Relays PUSH to the same sockets (every pool of [zmq] tasks), common/presence_wire.h:
 * [PROTOCOL_VERB_SIGNAL][topic][payload], a browser's publish, which the worker publishes as it
 * is, like a publish, and never stores; [PROTOCOL_VERB_PRESENCE][relay id][JSON], a relay's
 * changes to who is in its channels, which the worker applies in the store.
 *
 * Events (PUB -> worker XSUB/XPUB proxy -> relay SUB), two frames: [topic][payload], the topic
 * a client id or another channel's topic (common/channel.h).
 * The payload is exactly the text sent to the browser:
 *   {"type":"task","event":"progress","seq":5,"task":{...task object...}}
 * The relay routes on the first frame by exact match and never parses the payload.
 */
#ifndef TW_COMMON_PROTOCOL_H
#define TW_COMMON_PROTOCOL_H

#include <jansson.h>
#include <stdint.h>

#define PROTOCOL_VERB_SUBMIT "submit"
#define PROTOCOL_VERB_CANCEL "cancel"
#define PROTOCOL_VERB_RETRY "retry"     /* a finished task was given a new attempt */
#define PROTOCOL_VERB_PUBLISH "publish" /* a server's message for a channel */
/* Browser publish and presence (common/presence_wire.h). */
#define PROTOCOL_VERB_SIGNAL "signal"     /* a browser's message for a channel: never stored */
#define PROTOCOL_VERB_PRESENCE "presence" /* a relay's presence changes and beats */
#define PROTOCOL_VERB_MAX 16              /* longest verb frame accepted, NUL included */

/* Task events, in the order a task can go through them. */
#define PROTOCOL_EVENT_QUEUED "queued"
#define PROTOCOL_EVENT_STARTED "started"
#define PROTOCOL_EVENT_PROGRESS "progress"
#define PROTOCOL_EVENT_RETRYING "retrying" /* an attempt ended; the task waits for its next */
#define PROTOCOL_EVENT_SUCCEEDED "succeeded"
#define PROTOCOL_EVENT_FAILED "failed"
#define PROTOCOL_EVENT_CANCELLED "cancelled"

/* Channel history (docs/PROTOCOL.md, "History and recovery"): a message of POST /api/publish
 * to a channel whose namespace keeps history goes out, and is read back, with its place in
 * the channel's stream: {"type":"message","channel":C,"data":{...},"offset":N,"epoch":"E"}. */
#define PROTOCOL_POSITION_MAX 64 /* bytes ,"offset":N,"epoch":"E" adds to a message, at most */

/* Set "offset" and "epoch" (16 hex digits) of message (a JSON object), the one builder of a
 * message's position for the worker that publishes it and the handler that reads it back.
 * 0, or -1 when message is not an object or memory ran out. */
int protocol_channel_position(json_t *message, int64_t offset, const char *epoch);

/* The serialized event message for task (a task object from the store, which carries "seq").
 * Caller owns the string; free().  NULL on allocation failure. */
char *protocol_task_event(const char *event, const json_t *task);

/* The event that announces task's current status ("queued", "started" for running, or the
 * final status).  Borrowed; static storage. */
const char *protocol_event_for_status(const char *status);

#endif
