/* history.h: the worker pool's side of channel history (docs/PROTOCOL.md, "History and
 * recovery"): the messages of POST /api/publish to a channel whose namespace keeps history,
 * collected while the pool drains its tasks socket, stored in one transaction per turn (each
 * its offset, its row, its channel trimmed: store_history_append), and only after the commit
 * published, each with "offset" and "epoch", in the order they came.
 *
 * Owns a batch of at most HISTORY_BATCH_MAX messages (copies of their frames); the pool
 * flushes it before it takes one more.  When the store cannot take a batch (its transaction
 * fails), the batch's messages are dropped, neither stored nor published, with one log line:
 * every message a subscriber gets with an offset is one the history can give back.  Messages
 * of a namespace without history are not taken (the pool publishes them as before), and
 * neither are task events: the store's tasks are their truth.
 */
#ifndef TW_WORKER_HISTORY_H
#define TW_WORKER_HISTORY_H

#include <stddef.h>

#include "config.h"
#include "store.h"

#define HISTORY_BATCH_MAX STORE_HISTORY_BATCH_MAX /* messages stored in one transaction */

struct history;

/* Publishes one message (topic and payload borrowed for the call) on the pool's events. */
typedef void history_publish_fn(void *data, const char *topic, size_t topic_len,
                                const char *payload, size_t payload_len);

/* An empty batch.  cfg is borrowed and must outlive it.  Caller owns; history_destroy().
 * NULL when out of memory. */
struct history *history_new(const struct config *cfg);

/* Drop what the batch holds (unpublished) and free it.  NULL-safe; nulls *history. */
void history_destroy(struct history **history);

/* A publish of [topic][payload] from the tasks socket: 1 when topic's channel keeps history
 * and the message is taken into the batch (copied; history_flush publishes it), 0 when it
 * keeps none (the caller publishes the message as it is), -1 when it was refused, logged and
 * dropped: a payload that is not a JSON object, or longer than [relay] max_message less
 * PROTOCOL_POSITION_MAX (its position would make the relays drop it), or no memory. */
int history_take(struct history *history, const char *topic, size_t topic_len, const char *payload,
                 size_t payload_len);

/* 1 when the batch holds HISTORY_BATCH_MAX messages: flush it before taking another. */
int history_full(const struct history *history);

/* Store the batch in one transaction, then hand each message with its position to publish
 * (with data), in the order taken, and empty the batch.  Does nothing when it is empty. */
void history_flush(struct history *history, struct store *store, history_publish_fn *publish,
                   void *data);

/* The trim by age of every channel, quiet ones too: store_history_prune, one short
 * transaction per STORE_PRUNE_BATCH messages, at most max_batches.  The messages deleted, or
 * a negative code when the first prune failed. */
int history_prune(struct store *store, int max_batches);

#endif
