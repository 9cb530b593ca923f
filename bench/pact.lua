-- wrk script: cycle through pre-signed request bodies (one JSON document per line), count
-- non-200 replies, and print one machine-readable summary line.
--   wrk -t1 -c16 -d10s --latency -s bench/pact.lua http://127.0.0.1:PORT/pact -- BODIES_FILE
local threads = {}
local requests = {}
local index = 0
non200 = 0
statuses = ""

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk ... -s pact.lua URL -- BODIES_FILE")
  end
  local headers = { ["Content-Type"] = "application/json" }
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", wrk.path, headers, line)
    end
  end
  if #requests == 0 then
    error("no bodies in " .. path)
  end
  -- each thread starts at its own place in the list, so threads send distinct bodies
  index = ((thread_id or 1) - 1) * math.floor(#requests / 8) % #requests
end

function request()
  index = index % #requests + 1
  return requests[index]
end

local seen = {}
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if seen[status] == nil then
      seen[status] = true
      statuses = statuses .. tostring(status) .. " "
    end
  end
end

function done(summary, latency, requests)
  local bad = 0
  local codes = ""
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non200") or 0)
    codes = codes .. (thread:get("statuses") or "")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non200":%d,"non200_statuses":"%s",' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, bad, codes,
    e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
