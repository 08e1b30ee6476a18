-- submit.lua: wrk script for the submission benchmark: POST /api/tasks with a bearer token.
-- The token comes from the environment (BENCH_TOKEN), fetched by the harness from
-- POST /api/session on the same server.  wrk counts answers of 400 and above in
-- errors.status, so "errors" is every request that was not accepted.
wrk.method = "POST"
wrk.body = '{"type":"sleep","name":"bench","params":{"duration_ms":100,"steps":1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")

done = function(summary, latency, requests)
    io.write(string.format(
        'WRK_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,' ..
        '"errors":%d,"status_errors":%d}\n',
        summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99),
        summary.errors.connect + summary.errors.read + summary.errors.write +
        summary.errors.status + summary.errors.timeout, summary.errors.status))
end
