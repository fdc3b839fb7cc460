-- wrk script of bench/api_latency.py: bearer auth, gzip accepted (as dashboards send), and the
-- latency percentiles as one JSON line at the end.
-- Arguments (after `--`): API key [, start ms, end ms]. With a range, every request asks for
-- its own range (the start moves by 1 ms per request and differs per thread), so no two
-- requests share a cached result: the uncached case.
-- Or: API key, "window", seconds: every request asks for its own `window` (1 s shorter per
-- request, 100000 s apart per thread), the uncached case of a change's impact.

local next_id = 0
local cold_start, cold_end = nil, nil
local sent = 0
local window_s = nil

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

local function rfc3339(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
end

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.headers["Accept-Encoding"] = "gzip"
  if args[2] == "window" then
    window_s = tonumber(args[3])
  elseif args[2] then
    cold_start, cold_end = tonumber(args[2]), tonumber(args[3])
  end
end

function request()
  if window_s then
    sent = sent + 1
    local sep = string.find(wrk.path, "?", 1, true) and "&" or "?"
    return wrk.format(nil, wrk.path .. sep .. "window=" .. (window_s - thread_id * 100000 - sent) .. "s")
  end
  if not cold_start then
    return wrk.format()
  end
  sent = sent + 1
  -- thread_id is the global that setup() gives each thread's state.
  local start = cold_start + thread_id * 10000000 + sent
  local sep = string.find(wrk.path, "?", 1, true) and "&" or "?"
  local path = wrk.path .. sep .. "start=" .. rfc3339(start) .. "&end=" .. rfc3339(cold_end)
  return wrk.format(nil, path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "non_2xx_3xx": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
