/* hello.c: the FastCGI ceiling for the submission benchmark.
 *
 * The least a responder can do for POST /api/tasks under the same lighttpd: read the body,
 * answer 202 with a small JSON object of about the same size as a task.  No store, no JSON
 * parsing, no token check; what taskwire.fcgi does beyond this is its cost.
 */
#include <stdio.h>
#include <stdlib.h>

/* The whole response, built once with the C library's snprintf (fcgi2's printf knows no %zu). */
static char response[1024];

#include <fcgi_stdio.h>

#define BODY_MAX 65536 /* bytes of request body read; the rest is discarded unread */

int
main(void)
{
    static char body[BODY_MAX];
    static const char reply[] =
        "{\"id\":\"00000000000000000000000000000000\",\"client_id\":"
        "\"00000000000000000000000000000000\",\"type\":\"sleep\",\"name\":null,"
        "\"params\":{\"duration_ms\":100,\"steps\":1},\"status\":\"queued\",\"progress\":0,"
        "\"message\":null,\"result\":null,\"error\":null,\"attempts\":0,\"seq\":1,"
        "\"created_at\":\"2026-01-01T00:00:00.000Z\",\"started_at\":null,\"finished_at\":null}";
    int len = snprintf(response, sizeof response,
                       "Status: 202 Accepted\r\nContent-Type: application/json\r\n"
                       "Location: /api/tasks/00000000000000000000000000000000\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       sizeof reply - 1, reply);
    if (len < 0 || (size_t)len >= sizeof response)
        return 1;
    while (FCGI_Accept() >= 0) {
        const char *cl = getenv("CONTENT_LENGTH");
        long want = cl ? strtol(cl, NULL, 10) : 0;
        if (want < 0 || want > BODY_MAX)
            want = BODY_MAX;
        if (want > 0)
            fread(body, 1, (size_t)want, stdin);
        fwrite(response, 1, (size_t)len, stdout);
    }
    return 0;
}
