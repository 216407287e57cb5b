-- Prints wrk's results as one JSON line (p50/p95/p99 in ms, errors), so the
-- bench scripts can put them in docs/benchmarks.md.
local method, body, token = os.getenv("BENCH_METHOD"), os.getenv("BENCH_BODY"), os.getenv("BENCH_TOKEN")
wrk.method = method or "GET"
if body then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
if token then
  wrk.headers["Authorization"] = "Bearer " .. token
end
-- Think time: each connection waits this long between its requests, so the
-- offered rate (connections / think time) can sit below capacity and the
-- latency is the server's, not the queue a closed loop builds.
local think_ms = tonumber(os.getenv("BENCH_THINK_MS") or "")
if think_ms then
  function delay()
    return think_ms
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests":%d,"seconds":%.2f,"rps":%.0f,"p50_ms":%.2f,"p95_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"errors":%d,"non_2xx":%d,"timeouts":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, errors, summary.errors.status, summary.errors.timeout))
end
