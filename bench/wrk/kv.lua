-- One wrk script for every system, so that neither side gets a friendlier client.
--
--   wrk -s kv.lua URL -- dialect=etcd|stcache reads=0.9 value=100 keys=10000 consistency=linearizable
--
-- dialect=etcd    POST /v3/kv/put {"key":b64,"value":b64}; POST /v3/kv/range {"key":b64}
--                 (linearizable unless consistency=stale, which sends "serializable":true)
-- dialect=stcache PUT /v1/kv/KEY (raw body); GET /v1/kv/KEY?consistency=C (also the bare Kestrel baseline)
-- dialect=seed    GET /set?key=KEY&value=VALUE; GET /get?key=KEY (the seeds' API)
--
-- Keys are "k0".."k{keys-1}", chosen uniformly at random per request; the value is one random printable string
-- of the given size per thread. done() prints one line "WRKJSON {...}" with throughput, latency percentiles
-- (microseconds) and errors, for compare.sh to collect.

local params = {
   dialect = "stcache",
   reads = 0,
   value = 100,
   keys = 10000,
   consistency = "linearizable",
}

-- Wrapper scripts (puts.lua, gets.lua, ...) set defaults before loading this file.
if kv_defaults then
   for k, v in pairs(kv_defaults) do params[k] = v end
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(data)
   return ((data:gsub(".", function(x)
      local r, b = "", x:byte()
      for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
      return r
   end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
      if #x < 6 then return "" end
      local c = 0
      for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
      return b64chars:sub(c + 1, c + 1)
   end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local thread_counter = 0
local threads = {}

function setup(thread)
   thread_counter = thread_counter + 1
   thread:set("thread_id", thread_counter)
   table.insert(threads, thread)
end

local put_requests, get_requests

function init(args)
   for _, arg in ipairs(args) do
      local k, v = arg:match("^([%w_]+)=(.*)$")
      if k then params[k] = v end
   end
   local reads = tonumber(params.reads)
   local value_size = tonumber(params.value)
   local keys = tonumber(params.keys)
   local dialect = params.dialect
   local stale = params.consistency == "stale"
   math.randomseed(os.time() * 1000 + (thread_id or 0))
   reads_ratio = reads

   local chars = {}
   for i = 1, value_size do chars[i] = string.char(97 + math.random(0, 25)) end
   local value = table.concat(chars)

   -- Requests are prebuilt, so the per-request cost in Lua is one table lookup for every dialect.
   put_requests, get_requests = {}, {}
   if dialect == "etcd" then
      local value64 = base64(value)
      local headers = { ["Content-Type"] = "application/json" }
      local range_tail = stale and '","serializable":true}' or '"}'
      for i = 1, keys do
         local key64 = base64("k" .. (i - 1))
         put_requests[i] = wrk.format("POST", "/v3/kv/put", headers, '{"key":"' .. key64 .. '","value":"' .. value64 .. '"}')
         if reads > 0 then
            get_requests[i] = wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. key64 .. range_tail)
         end
      end
   elseif dialect == "seed" then
      for i = 1, keys do
         put_requests[i] = wrk.format("GET", "/set?key=k" .. (i - 1) .. "&value=" .. value)
         get_requests[i] = wrk.format("GET", "/get?key=k" .. (i - 1))
      end
   else
      local headers = { ["Content-Type"] = "application/octet-stream" }
      local query = params.consistency ~= "" and ("?consistency=" .. params.consistency) or ""
      for i = 1, keys do
         put_requests[i] = wrk.format("PUT", "/v1/kv/k" .. (i - 1), headers, value)
         if reads > 0 then
            get_requests[i] = wrk.format("GET", "/v1/kv/k" .. (i - 1) .. query)
         end
      end
   end
   key_count = keys
end

function request()
   local i = math.random(1, key_count)
   if reads_ratio > 0 and math.random() < reads_ratio then
      return get_requests[i]
   end
   return put_requests[i]
end

function done(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   local non2xx = e.status
   io.write(string.format(
      'WRKJSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
      summary.requests, seconds, (summary.requests - non2xx) / seconds,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end
