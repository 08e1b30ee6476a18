/* Unit tests for common/wire.c's wire_recv: a signal interrupting the read of a message's
 * second frame.  libzmq can answer EINTR even when the frame is there (a fuzzing campaign of
 * the relay's ingress met it under libFuzzer's timer signal: the payload frame, given up, was
 * then read as the start of the next message).  zmq_msg_recv is wrapped (-Wl,--wrap) so the
 * interruption comes exactly where the test wants it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <zmq.h>

#include "wire.h"

int __real_zmq_msg_recv(zmq_msg_t *msg, void *socket, int flags);
int __wrap_zmq_msg_recv(zmq_msg_t *msg, void *socket, int flags);

static int interrupt_every; /* 0: never; n: the n-th call, and every n-th after it */
static int calls;

int
__wrap_zmq_msg_recv(zmq_msg_t *msg, void *socket, int flags)
{
    if (interrupt_every && ++calls % interrupt_every == 0) {
        errno = EINTR;
        return -1;
    }
    return __real_zmq_msg_recv(msg, socket, flags);
}

/* Two-frame messages read with wire_recv while every other call is interrupted: each arrives
 * whole, topic then payload, in order. */
static void
test_an_interrupted_frame_is_read_again(void **state)
{
    (void)state;
    void *zmq = zmq_ctx_new();
    void *in = zmq_socket(zmq, ZMQ_PAIR), *out = zmq_socket(zmq, ZMQ_PAIR);
    assert_int_equal(zmq_bind(in, "inproc://wire-test"), 0);
    assert_int_equal(zmq_connect(out, "inproc://wire-test"), 0);
    for (int i = 0; i < 10; i++) {
        char payload[16];
        int n = snprintf(payload, sizeof payload, "message %d", i);
        assert_int_equal(zmq_send(out, "topic", 5, ZMQ_SNDMORE), 5);
        assert_int_equal(zmq_send(out, payload, (size_t)n, 0), n);
    }
    interrupt_every = 2;
    for (int i = 0; i < 10; i++) {
        zmq_msg_t topic, payload;
        zmq_msg_init(&topic);
        zmq_msg_init(&payload);
        assert_int_equal(wire_recv(in, &topic, 1), 0);
        assert_int_equal(zmq_msg_size(&topic), 5);
        assert_true(zmq_msg_more(&topic));
        assert_int_equal(wire_recv(in, &payload, 0), 0);
        char expected[16];
        int n = snprintf(expected, sizeof expected, "message %d", i);
        assert_int_equal(zmq_msg_size(&payload), (size_t)n);
        assert_memory_equal(zmq_msg_data(&payload), expected, (size_t)n);
        assert_false(zmq_msg_more(&payload));
        zmq_msg_close(&topic);
        zmq_msg_close(&payload);
    }
    assert_true(calls >= 20); /* interruptions did happen */
    /* Nothing left: a first frame is EAGAIN, not a wait. */
    interrupt_every = 0;
    zmq_msg_t none;
    zmq_msg_init(&none);
    assert_int_equal(wire_recv(in, &none, 1), -1);
    assert_int_equal(zmq_errno(), EAGAIN);
    zmq_msg_close(&none);
    zmq_close(in);
    zmq_close(out);
    zmq_ctx_term(zmq);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_interrupted_frame_is_read_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
