-- wrk script: POST a job as fast as the API accepts it (BENCH_TOKEN,
-- BENCH_BODY), and write the id of every accepted job to
-- BENCH_IDS.<thread>, one per line, so the harness can account for each
-- accepted job afterwards. Prints wrk's results as one JSON line, like
-- report.lua.
local ids

function setup(thread)
  setup_count = (setup_count or 0) + 1
  thread:set("n", setup_count)
end

function init(args)
  ids = io.open(os.getenv("BENCH_IDS") .. "." .. tostring(n), "w")
  ids:setvbuf("line")
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

function response(status, headers, body)
  if status >= 200 and status < 300 then
    local id = body:match('"jobId"%s*:%s*"([^"]+)"')
    if id then
      ids:write(id, "\n")
    end
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
