-- One wrk script for every load bench/compare.py runs, so that both systems see the same key
-- space, value size and client. Chosen by environment variables:
--   BENCH_OP           rn_put | rn_get_stale | rn_get_linearizable | rn_txn |
--                      etcd_put | etcd_range_serializable | etcd_range_linearizable | etcd_txn |
--                      get_path (GET BENCH_PATH: what a server answers doing nothing)
--   BENCH_KEYS         keys are k1..kN, picked uniformly at random (default 10000)
--   BENCH_KEY_FORMAT   the key's name for number i, as string.format sees it (default "k%d")
--   BENCH_VALUE_BYTES  value size for writes (default 64)
--   BENCH_TOKEN        if set, every request carries Authorization: Bearer <token>
--   BENCH_CLOSE        if "1", every request carries Connection: close (a new connection each)
-- done() prints one JSON line that compare.py parses: requests, seconds, errors, latency (us).

local op = os.getenv("BENCH_OP") or "rn_put"
local keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local key_format = os.getenv("BENCH_KEY_FORMAT") or "k%d"
local value = string.rep("v", tonumber(os.getenv("BENCH_VALUE_BYTES") or "64"))

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  return ((s:gsub(".", function(c)
    local bits, byte = "", c:byte()
    for i = 8, 1, -1 do
      bits = bits .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0")
    end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then
      return ""
    end
    local n = 0
    for i = 1, 6 do
      n = n + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0)
    end
    return b64chars:sub(n + 1, n + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

-- Requests are built once per key; the run only picks among them.
local prepared = {}

local function build(i)
  local key = string.format(key_format, i)
  if op == "rn_put" then
    return wrk.format("PUT", "/key/" .. key, nil, value)
  elseif op == "rn_get_stale" then
    return wrk.format("GET", "/key/" .. key)
  elseif op == "rn_get_linearizable" then
    return wrk.format("GET", "/key/" .. key .. "?level=linearizable")
  elseif op == "etcd_put" then
    local body = '{"key":"' .. base64(key) .. '","value":"' .. base64(value) .. '"}'
    return wrk.format("POST", "/v3/kv/put", nil, body)
  elseif op == "etcd_range_serializable" then
    return wrk.format("POST", "/v3/kv/range", nil, '{"key":"' .. base64(key) .. '","serializable":true}')
  elseif op == "etcd_range_linearizable" then
    return wrk.format("POST", "/v3/kv/range", nil, '{"key":"' .. base64(key) .. '"}')
  elseif op == "rn_txn" then
    -- A compare that holds (the guard key is never written), then the put: what a
    -- compare-and-set costs, answered 200 either way.
    local body = '{"compare":[{"key":"guard' .. i .. '","exists":false}],' ..
      '"success":[{"op":"put","key":"' .. key .. '","value":"' .. value .. '"}]}'
    return wrk.format("POST", "/txn", nil, body)
  elseif op == "etcd_txn" then
    local body = '{"compare":[{"key":"' .. base64("guard" .. i) .. '","target":"VERSION",' ..
      '"result":"EQUAL","version":"0"}],"success":[{"requestPut":{"key":"' .. base64(key) ..
      '","value":"' .. base64(value) .. '"}}]}'
    return wrk.format("POST", "/v3/kv/txn", nil, body)
  elseif op == "get_path" then
    return wrk.format("GET", os.getenv("BENCH_PATH"))
  end
  error("unknown BENCH_OP " .. op)
end

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("seed", thread_count)
end

function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
  wrk.headers["Content-Type"] = "application/json"
  if os.getenv("BENCH_CLOSE") == "1" then
    wrk.headers["Connection"] = "close"
  end
  local token = os.getenv("BENCH_TOKEN") or ""
  if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  local i = math.random(keys)
  local r = prepared[i]
  if r == nil then
    r = build(i)
    prepared[i] = r
  end
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.timeout + e.status, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
