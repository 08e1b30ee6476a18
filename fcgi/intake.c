/* intake.c: group commit of one process's submissions (leader and followers). */
#include "intake.h"

#include <string.h>

struct intake_entry {
    struct store_submission *sub;
    struct intake_entry *next;
    int done;
};

int
intake_init(struct intake *intake, struct store **store)
{
    memset(intake, 0, sizeof *intake);
    intake->store = *store;
    *store = NULL;
    if (pthread_mutex_init(&intake->lock, NULL) != 0) {
        store_destroy(&intake->store);
        return -1;
    }
    if (pthread_cond_init(&intake->committed, NULL) != 0) {
        pthread_mutex_destroy(&intake->lock);
        store_destroy(&intake->store);
        return -1;
    }
    intake->tail = &intake->head;
    return 0;
}

void
intake_fini(struct intake *intake)
{
    if (!intake->tail)
        return;
    pthread_cond_destroy(&intake->committed);
    pthread_mutex_destroy(&intake->lock);
    store_destroy(&intake->store);
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
    pthread_mutex_lock(&intake->lock);
    for (size_t i = 0; i < count; i++)
        batch[i]->done = 1;
    intake->leading = 0;
    intake->commits++;
    pthread_cond_broadcast(&intake->committed);
}

void
intake_submit(struct intake *intake, struct store_submission *sub)
{
    struct intake_entry entry = {sub, NULL, 0};
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
            pthread_cond_wait(&intake->committed, &intake->lock);
    }
    pthread_mutex_unlock(&intake->lock);
}
