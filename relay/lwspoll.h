/* lwspoll.h: lws's full turn polls only the descriptors it waits on.
 *
 * Why: lws 4.1's service (lws_service, unix poll loop) makes one poll() over its whole table,
 * and that table holds every connection of the relay, including the established ones, which the
 * relay reads and writes itself (loop.h, send.h) and for which lws's entry asks for nothing
 * (events 0).  The kernel visits each entry whatever it asks for (a descriptor lookup and the
 * socket's poll method): about a microsecond each, so a relay of 16,000 idle connections spent
 * 16 ms of CPU per turn on entries that could only ever report a hang-up, several turns a
 * second (its timers), and a host of a million idle connections spent more than a core on it.
 *
 * How: the relay defines poll().  The dynamic linker binds libwebsockets' call to it (the
 * executable is first in symbol lookup, and ld exports the definition because the library
 * refers to it).  Outside a turn it is ppoll() with poll's meaning.  Between lwspoll_turn(1) and
 * lwspoll_turn(0) on the same thread (relay.c, around each lws_service), it gives the kernel only
 * the entries whose events are not 0, and reports revents 0 for the others.
 *
 * Assumptions, and what breaks each:
 * - libwebsockets is a shared library calling libc's poll() through its PLT, once per
 *   lws_service, built for its default poll loop.  A static or -Bsymbolic build, or one with
 *   another event library, never calls this: nothing is trimmed and the cost comes back; nothing
 *   else changes.
 * - An entry with events 0 can only report POLLHUP, POLLERR or POLLNVAL, and whatever holds it
 *   learns of those elsewhere: an established connection is in the relay's epoll set (loop.h),
 *   which reports its hang-up and error, and the session closes it.  A descriptor lws held with
 *   events 0 that nothing else watched would learn of its hang-up only at lws's own timeout for
 *   it (every state lws leaves a connection in without asking for input has one).
 * - poll() inside a turn is lws's: nothing else polls on that thread while lws_service runs
 *   (lws's callbacks into the relay do not poll).
 * Bounds: the trimmed table is kept per thread and grows to the largest table seen (at most the
 * process's descriptor limit); if it cannot grow, that turn polls the whole table.
 */
/*
 * The same module also spares lws's wake-up of its own service when the relay adopts a socket.
 *
 * Why: lws_adopt_socket_vhost ends with lws_cancel_service_pt, which writes lws's eventfd so that
 * a service thread blocked in poll() on another thread sees the new descriptor.  The relay adopts
 * on its one service thread (listener.c), which is not blocked: the write is a system call per
 * accepted connection, and the eventfd it leaves readable costs a read and a round of
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED at the next full turn.
 *
 * How: the relay defines eventfd_write() (bound as poll() is, above).  Between
 * lwspoll_adopting(1) and lwspoll_adopting(0) on the same thread it writes nothing and reports
 * success; otherwise it is glibc's: one 8-byte write().
 *
 * Assumptions, and what breaks each:
 * - Inside lws_adopt_socket_vhost, lws's only eventfd_write is that wake (lws 4.1: its pipe
 *   signal, unix-pipe.c).  A version that signalled something else there through it would lose
 *   that signal for adopted sockets.
 * - Adoption happens on the thread that runs lws_service, between its turns (the relay has one
 *   service thread; listener_accept runs from its loop).  Adopting from another thread while the
 *   service waits would need the wake: that caller must not set lwspoll_adopting.
 * - Nothing else in the process relies on eventfd_write being glibc's own (libzmq writes its
 *   eventfds with write()).
 */
#ifndef TW_RELAY_LWSPOLL_H
#define TW_RELAY_LWSPOLL_H

/* On: the poll() calls that follow on this thread are lws's full turn.  Off: they are not. */
void lwspoll_turn(int on);

/* On: the eventfd_write() calls that follow on this thread are lws's wake at an adoption by its
 * own service thread, and are skipped.  Off: they are written. */
void lwspoll_adopting(int on);

/* Free this thread's trimmed table (the relay's end).  Harmless when there is none. */
void lwspoll_fini(void);

#endif
