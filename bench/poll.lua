-- wrk script: many users polling their own job. BENCH_POOL names a file of
-- "token jobId" lines (tokens of alice and bob, each paired with a job of
-- its owner); every request takes the next line, so the requests carry many
-- different tokens and ids. Prints wrk's results as one JSON line
-- (p50/p95/p99 in ms, errors), like report.lua.
local requests = {}
local i = 0

function setup(thread)
  setup_count = (setup_count or 0) + 1
  thread:set("offset", setup_count * 7919)
end

function init(args)
  for line in io.lines(os.getenv("BENCH_POOL")) do
    local token, job = line:match("^(%S+) (%S+)$")
    if token then
      requests[#requests + 1] = wrk.format("GET", "/api/jobs/" .. job,
        { ["Authorization"] = "Bearer " .. token })
    end
  end
  i = (offset or 0) % #requests
end

function request()
  i = i % #requests + 1
  return requests[i]
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests":%d,"seconds":%.2f,"rps":%.0f,"p50_ms":%.2f,"p95_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"errors":%d,"non_2xx":%d,"timeouts":%d,"connect_errors":%d,"read_errors":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, errors, summary.errors.status, summary.errors.timeout,
    summary.errors.connect, summary.errors.read))
end
