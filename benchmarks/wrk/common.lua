-- Shared by every scenario: numbers each wrk thread, prints the result as one JSON line.
-- benchmarks/run.py prepends this to the scenario's script.
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

function done(summary, latency, requests)
  -- The whole latency histogram (microseconds, count), so benchmarks/run.py can merge
  -- the histograms of several short runs and take percentiles over all their requests.
  local buckets = {}
  for i = 1, #latency do
    local value, count = latency(i)
    buckets[i] = string.format("[%d,%d]", value, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"status_errors":%d,"socket_errors":%d,"timeouts":%d,"latency":[%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write, e.timeout, table.concat(buckets, ",")))
end
