/* intake.c: group commit of one process's submissions (leader and followers). */
#include "intake.h"

#include <string.h>

#include "errors.h"

struct intake_entry {
    struct store_submission *const *subs; /* one thread's submissions, committed together */
    size_t count;                         /* 1..INTAKE_BATCH_MAX */
    struct intake_entry *next;
    pthread_cond_t wake; /* its thread: the entry is done, or the thread should lead */
    int done;
};

int
intake_init(struct intake *intake, struct store *store, intake_committed_fn *committed, void *data)
{
    memset(intake, 0, sizeof *intake);
    intake->store = store;
    intake->committed = committed;
    intake->data = data;
    if (pthread_mutex_init(&intake->lock, NULL) != 0)
        return -1;
    intake->tail = &intake->head;
    return 0;
}

void
intake_fini(struct intake *intake)
{
    if (!intake->tail)
        return;
    pthread_mutex_destroy(&intake->lock);
    intake->tail = NULL;
}

/* Lead one commit: the queue's first entries, INTAKE_BATCH_MAX submissions at most (an entry
 * is never split).  Called and returns with the lock held; releases it while SQLite and the
 * disk work. */
static void
intake_lead(struct intake *intake)
{
    struct intake_entry *batch[INTAKE_BATCH_MAX];
    struct store_submission *subs[INTAKE_BATCH_MAX];
    size_t entries = 0, count = 0;
    while (intake->head && count + intake->head->count <= INTAKE_BATCH_MAX) {
        struct intake_entry *entry = intake->head;
        batch[entries++] = entry;
        for (size_t i = 0; i < entry->count; i++)
            subs[count++] = entry->subs[i];
        intake->head = entry->next;
    }
    if (!intake->head)
        intake->tail = &intake->head;
    intake->leading = 1;
    pthread_mutex_unlock(&intake->lock);
    store_tasks_insert(intake->store, subs, count);
    for (size_t i = 0; i < count && intake->committed; i++)
        if (subs[i]->rc == 0)
            intake->committed(intake->data, subs[i]);
    pthread_mutex_lock(&intake->lock);
    /* Wake exactly the threads whose submissions this commit stored, and the first of those
     * that queued meanwhile to lead the next: a broadcast would wake every waiting thread
     * for most of them to sleep again. */
    for (size_t i = 0; i < entries; i++) {
        batch[i]->done = 1;
        pthread_cond_signal(&batch[i]->wake);
    }
    intake->leading = 0;
    intake->commits++;
    if (intake->head)
        pthread_cond_signal(&intake->head->wake);
}

/* Queue count (1..INTAKE_BATCH_MAX) submissions as one entry and wait until it is done. */
static void
intake_submit_entry(struct intake *intake, struct store_submission *const *subs, size_t count)
{
    struct intake_entry entry = {.subs = subs, .count = count};
    if (pthread_cond_init(&entry.wake, NULL) != 0) {
        for (size_t i = 0; i < count; i++) {
            subs[i]->task = NULL;
            subs[i]->rc = TW_E_INTERNAL;
        }
        return;
    }
    pthread_mutex_lock(&intake->lock);
    /* The entry lives on this stack until it is done, and a leader unlinks it (and resets
     * tail) before marking it done. */
    *intake->tail = &entry;
    /* cppcheck-suppress autoVariables */
    intake->tail = &entry.next;
    while (!entry.done) {
        if (!intake->leading)
            intake_lead(intake);
        else
            pthread_cond_wait(&entry.wake, &intake->lock);
    }
    pthread_mutex_unlock(&intake->lock);
    pthread_cond_destroy(&entry.wake);
}

void
intake_submit(struct intake *intake, struct store_submission *const *subs, size_t count)
{
    for (size_t done = 0; done < count; done += INTAKE_BATCH_MAX) {
        size_t part = count - done < INTAKE_BATCH_MAX ? count - done : INTAKE_BATCH_MAX;
        intake_submit_entry(intake, subs + done, part);
    }
}
