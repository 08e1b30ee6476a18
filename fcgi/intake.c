/* intake.c: group commit of one process's submissions (leader and followers). */
#include "intake.h"

#include <string.h>

#include "errors.h"

struct intake_entry {
    struct store_submission *sub;
    struct intake_entry *next;
    pthread_cond_t wake;  /* its thread: the entry is done, or the thread should lead */
    int done;
};

int
intake_init(struct intake *intake, struct store *store, intake_committed_fn *committed,
            void *data)
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

/* Lead one commit: the queue's first INTAKE_BATCH_MAX entries.  Called and returns with the
 * lock held; releases it while SQLite and the disk work. */
static void
intake_lead(struct intake *intake)
{
    struct intake_entry *batch[INTAKE_BATCH_MAX];
    struct store_submission *subs[INTAKE_BATCH_MAX];
    size_t count = 0;
    while (intake->head && count < INTAKE_BATCH_MAX) {
        batch[count] = intake->head;
        subs[count] = intake->head->sub;
        count++;
        intake->head = intake->head->next;
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
    for (size_t i = 0; i < count; i++) {
        batch[i]->done = 1;
        pthread_cond_signal(&batch[i]->wake);
    }
    intake->leading = 0;
    intake->commits++;
    if (intake->head)
        pthread_cond_signal(&intake->head->wake);
}

void
intake_submit(struct intake *intake, struct store_submission *sub)
{
    struct intake_entry entry = {.sub = sub};
    if (pthread_cond_init(&entry.wake, NULL) != 0) {
        sub->task = NULL;
        sub->rc = TW_E_INTERNAL;
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
