/* acceptors.c: FastCGI threads serving requests, one each at a time. */
#include "acceptors.h"

#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zmq.h>

#include "app.h"
#include "errors.h"
#include "intake.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "router.h"

struct acceptor {
    struct acceptors *all;
    struct app *app;
    FCGX_Request fcgx;
    pthread_t thread;
};

struct acceptors {
    void *zmq_context;
    struct app *writer;           /* the intake's store connection and PUSH socket */
    struct intake intake;
    int intake_ready;
    pthread_mutex_t state_lock;
    pthread_cond_t idle;          /* in_flight went to 0 */
    int in_flight;                /* requests being served */
    int stopping;
    int count;
    struct acceptor threads[];
};

/* Count a request in; 0 when stopping (the request is dropped unanswered). */
static int
acceptors_enter(struct acceptors *all)
{
    pthread_mutex_lock(&all->state_lock);
    int go = !all->stopping;
    if (go)
        all->in_flight++;
    pthread_mutex_unlock(&all->state_lock);
    return go;
}

static void
acceptors_leave(struct acceptors *all)
{
    pthread_mutex_lock(&all->state_lock);
    if (--all->in_flight == 0)
        pthread_cond_broadcast(&all->idle);
    pthread_mutex_unlock(&all->state_lock);
}

static void *
acceptor_main(void *arg)
{
    struct acceptor *self = arg;
    struct acceptors *all = self->all;
    for (;;) {
        /* Linux lets threads wait in accept() together and wakes one per connection, so
         * fcgi2's accept needs no lock of ours (its own is compiled out there). */
        int rc = FCGX_Accept_r(&self->fcgx);
        if (rc < 0) {
            /* The listening socket is gone or broken: the process ends, as it would with one
             * thread.  main's sigwait takes the signal. */
            log_error("event=accept_failed code=%d", rc);
            kill(getpid(), SIGTERM);
            break;
        }
        if (!acceptors_enter(all))
            break;
        struct request req;
        if (request_init(&req, &self->fcgx) == 0)
            router_dispatch(self->app, &req);
        else
            reply_error(&req, TW_E_NOT_FOUND, "path too long");
        FCGX_Finish_r(&self->fcgx);
        acceptors_leave(all);
    }
    FCGX_Finish_r(&self->fcgx);
    return NULL;
}

/* Free what acceptors_new made when no thread runs. */
static void
acceptors_free(struct acceptors *all)
{
    for (int i = 0; i < all->count; i++) {
        app_destroy(&all->threads[i].app);
        FCGX_Free(&all->threads[i].fcgx, 0);
    }
    if (all->intake_ready)
        intake_fini(&all->intake);
    app_destroy(&all->writer); /* its socket closes before the context ends */
    if (all->zmq_context)
        zmq_ctx_term(all->zmq_context);
    pthread_cond_destroy(&all->idle);
    pthread_mutex_destroy(&all->state_lock);
    free(all);
}

struct acceptors *
acceptors_new(const struct config *cfg, char *err, size_t errlen)
{
    int count = cfg->threads;
    struct acceptors *all = calloc(1, sizeof *all + (size_t)count * sizeof all->threads[0]);
    if (!all) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&all->state_lock, NULL);
    pthread_cond_init(&all->idle, NULL);
    all->count = count;
    all->zmq_context = zmq_ctx_new();
    if (!all->zmq_context || FCGX_Init() != 0) {
        snprintf(err, errlen, "cannot set up the FastCGI threads");
        acceptors_free(all);
        return NULL;
    }
    /* The first app creates the secret and the database if they are missing; the others
     * find them.  The intake writes every batch on this app's store, and every thread nudges
     * on its PUSH socket. */
    all->writer = app_new(cfg, all->zmq_context, NULL, NULL, err, errlen);
    if (!all->writer) {
        acceptors_free(all);
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        struct acceptor *self = &all->threads[i];
        self->all = all;
        FCGX_InitRequest(&self->fcgx, 0, 0);
        self->app = app_new(cfg, all->zmq_context, &all->intake, all->writer, err, errlen);
        if (!self->app) {
            acceptors_free(all);
            return NULL;
        }
    }
    all->intake_ready =
        intake_init(&all->intake, all->writer->store, app_task_committed, all->writer) == 0;
    if (!all->intake_ready) {
        snprintf(err, errlen, "cannot set up the intake");
        acceptors_free(all);
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        struct acceptor *self = &all->threads[i];
        if (pthread_create(&self->thread, NULL, acceptor_main, self) != 0) {
            snprintf(err, errlen, "cannot start thread %d of %d", i + 1, count);
            /* Threads already running are blocked in accept; main exits next. */
            return NULL;
        }
    }
    return all;
}

void
acceptors_stop(struct acceptors *all)
{
    pthread_mutex_lock(&all->state_lock);
    all->stopping = 1;
    while (all->in_flight > 0)
        pthread_cond_wait(&all->idle, &all->state_lock);
    /* No request runs now and none will start: the apps are free to close, so their PUSH
     * sockets flush queued nudges (APP_PUSH_LINGER) as a single-threaded handler's did. */
    for (int i = 0; i < all->count; i++)
        app_destroy(&all->threads[i].app);
    app_destroy(&all->writer);
    zmq_ctx_term(all->zmq_context);
    all->zmq_context = NULL;
    pthread_mutex_unlock(&all->state_lock);
}
