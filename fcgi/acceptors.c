/* acceptors.c: FastCGI threads taking turns to accept and serving the requests they took. */
#include "acceptors.h"

#include <errno.h>
#include <fastcgi.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
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

/* Every submission a thread takes fits in its app's batch, so they share one insert. */
_Static_assert(APP_BATCH_MAX >= ACCEPTORS_BATCH_MAX, "an app's batch holds a thread's requests");

struct acceptor {
    struct acceptors *all;
    struct app *app;
    pthread_t thread;
    FCGX_Request fcgx[ACCEPTORS_BATCH_MAX]; /* the requests taken */
    struct request req[ACCEPTORS_BATCH_MAX];
    int waiting[ACCEPTORS_BATCH_MAX]; /* 1: its answer waits for the app's batch */
};

struct acceptors {
    void *zmq_context;
    struct app *writer; /* the intake's store connection and PUSH socket */
    struct intake intake;
    int intake_ready;
    pthread_mutex_t turn; /* held by the thread accepting */
    pthread_mutex_t state_lock;
    pthread_cond_t idle; /* in_flight went to 0 */
    int in_flight;       /* requests being served */
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

/* Wait for a connection and take it, then those already waiting: the count taken (each
 * counted in), or -1 when the listening socket is gone or broken.  Called on the thread's turn,
 * so no other thread accepts meanwhile and a ready socket does not block. */
static int
acceptor_take(struct acceptor *self)
{
    int count = 0;
    while (count < ACCEPTORS_BATCH_MAX) {
        int rc = FCGX_Accept_r(&self->fcgx[count]);
        if (rc == -EAGAIN || rc == -EWOULDBLOCK) {
            /* Nothing waits: serve what was taken, or wait for the first. */
            if (count > 0)
                break;
            struct pollfd listener = {.fd = FCGI_LISTENSOCK_FILENO, .events = POLLIN};
            if (poll(&listener, 1, -1) < 0 && errno != EINTR)
                return -1;
            continue;
        }
        if (rc < 0) {
            log_error("event=accept_failed code=%d", rc);
            return count > 0 ? count : -1; /* the next turn fails again and reports it */
        }
        /* A kept connection would make this slot's next accept wait for that connection's
         * next request, holding the turn: each connection carries one request (a web server
         * asking to keep it sees it closed and opens another). */
        self->fcgx[count].keepConnection = 0;
        if (!acceptors_enter(self->all)) {
            FCGX_Finish_r(&self->fcgx[count]); /* stopping: dropped, as the process ends */
            break;
        }
        count++;
    }
    return count;
}

/* Put the rest of request i's answer on the wire: its streams' ends and FastCGI's end record.
 * The connection stays open until acceptor_serve's end. */
static void
acceptor_answered(struct acceptor *self, int i)
{
    FCGX_FClose(self->fcgx[i].err);
    FCGX_FClose(self->fcgx[i].out);
}

/* Serve the count requests taken: answer each, except that submissions wait to be inserted
 * together and are answered after.  Then close the connections: fcgi2 waits for the web server
 * to close its end first, so every answer is sent before the first wait, and the web server
 * takes them all in one turn. */
static void
acceptor_serve(struct acceptor *self, int count)
{
    app_batch_open(self->app);
    for (int i = 0; i < count; i++) {
        struct request *req = &self->req[i];
        if (request_init(req, &self->fcgx[i]) != 0)
            reply_error(req, TW_E_NOT_FOUND, "path too long");
        else
            router_dispatch(self->app, req);
        self->waiting[i] = app_batch_holds(self->app, req);
        if (!self->waiting[i])
            acceptor_answered(self, i);
    }
    app_batch_close(self->app);
    for (int i = 0; i < count; i++)
        if (self->waiting[i])
            acceptor_answered(self, i);
    for (int i = 0; i < count; i++) {
        FCGX_Finish_r(&self->fcgx[i]);
        acceptors_leave(self->all);
    }
}

static void *
acceptor_main(void *arg)
{
    struct acceptor *self = arg;
    struct acceptors *all = self->all;
    /* A batch thread: woken by a connection, it does not preempt the web server (on the same
     * core, as it often is) in the middle of its turn, but runs when that yields, and then
     * finds every request of the turn waiting.  Preempting, it took them one at a time. */
    struct sched_param batch = {0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
    for (;;) {
        pthread_mutex_lock(&all->turn);
        int count = acceptor_take(self);
        pthread_mutex_unlock(&all->turn);
        if (count < 0) {
            /* The listening socket is gone or broken: the process ends, as it would with one
             * thread.  main's sigwait takes the signal. */
            kill(getpid(), SIGTERM);
            break;
        }
        if (count == 0)
            break; /* stopping */
        acceptor_serve(self, count);
    }
    return NULL;
}

/* Free what acceptors_new made when no thread runs. */
static void
acceptors_free(struct acceptors *all)
{
    for (int i = 0; i < all->count; i++) {
        app_destroy(&all->threads[i].app);
        for (int k = 0; k < ACCEPTORS_BATCH_MAX; k++)
            FCGX_Free(&all->threads[i].fcgx[k], 0);
    }
    if (all->intake_ready)
        intake_fini(&all->intake);
    app_destroy(&all->writer); /* its socket closes before the context ends */
    if (all->zmq_context)
        zmq_ctx_term(all->zmq_context);
    pthread_cond_destroy(&all->idle);
    pthread_mutex_destroy(&all->state_lock);
    pthread_mutex_destroy(&all->turn);
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
    pthread_mutex_init(&all->turn, NULL);
    pthread_mutex_init(&all->state_lock, NULL);
    pthread_cond_init(&all->idle, NULL);
    all->count = count;
    all->zmq_context = zmq_ctx_new();
    int flags = fcntl(FCGI_LISTENSOCK_FILENO, F_GETFL);
    if (!all->zmq_context || FCGX_Init() != 0 || flags < 0 ||
        fcntl(FCGI_LISTENSOCK_FILENO, F_SETFL, flags | O_NONBLOCK) != 0) {
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
        for (int k = 0; k < ACCEPTORS_BATCH_MAX; k++)
            FCGX_InitRequest(&self->fcgx[k], FCGI_LISTENSOCK_FILENO, 0);
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
            /* Threads already running wait for a connection or their turn; main exits
             * next. */
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
