-- Shared by every wrk script: read a whitespace-separated data file, and print one JSON line
-- (prefixed BENCH_JSON) with throughput, latency percentiles and error counts when wrk is done.
local M = {}

function M.read_rows(path)
  local rows = {}
  for line in io.lines(path) do
    local row = {}
    for field in line:gmatch("%S+") do row[#row + 1] = field end
    if #row > 0 then rows[#rows + 1] = row end
  end
  assert(#rows > 0, "no rows in " .. path)
  return rows
end

-- Give each wrk thread its own random sequence.
local counter = 0
function M.setup(thread)
  counter = counter + 1
  thread:set("thread_no", counter)
end

function M.seed()
  math.randomseed(os.time() * 1000 + (thread_no or 0) * 7919)
end

function M.done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_s": %.3f, "rps": %.1f, "p50_ms": %.3f, '
      .. '"p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end

return M
