-- wrk script: POST one MCP tools/call per request and check every answer.
--
--   wrk -t1 -cN -dSs -s bench/tools_call.lua URL -- TEMPLATE VALUES [ACKS] [Header: value]...
--
-- TEMPLATE is a file holding the JSON-RPC body with @ID@ and @VALUE@ placeholders (written by
-- bench/run.py with the JSON escaping done). VALUES is a file with one already-JSON-escaped value a
-- line; request n uses line n mod count (a page path or a search query). If VALUES is "-" every
-- request gets a fresh value "bench-<thread>-<n>" instead (new pages for write_note). With ACKS,
-- every acknowledged result's "path<TAB>revision" is appended to ACKS.<thread> for run.py to check
-- against the database. Further arguments are extra request headers (Authorization,
-- Mcp-Session-Id, ...).
--
-- A response counts as "ok" only if it is HTTP 200 and the tools/call result says "isError": false
-- (JSON or SSE framing alike); everything else counts as "bad". done() prints one JSON line.

local threads = {}
local thread_number = 0

function setup(thread)
   thread_number = thread_number + 1
   thread:set("thread_id", thread_number)
   table.insert(threads, thread)
end

local function read_file(name)
   local f = assert(io.open(name, "rb"))
   local text = f:read("*a")
   f:close()
   return text
end

function init(args)
   local template = read_file(args[1]):gsub("%s+$", "")
   local id_at = template:find("@ID@", 1, true)
   local value_at = template:find("@VALUE@", 1, true)
   assert(id_at and value_at and id_at < value_at, "template needs @ID@ before @VALUE@")
   part1 = template:sub(1, id_at - 1)
   part2 = template:sub(id_at + 4, value_at - 1)
   part3 = template:sub(value_at + 7)
   values = nil
   if args[2] ~= "-" then
      values = {}
      for line in read_file(args[2]):gmatch("[^\n]+") do table.insert(values, line) end
   end
   acks = nil
   local first_header = 3
   if args[3] and not args[3]:find(":", 1, true) then
      acks = assert(io.open(args[3] .. "." .. thread_id, "w"))
      first_header = 4
   end
   headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream"}
   for i = first_header, #args do
      local name, value = args[i]:match("^([^:]+):%s*(.*)$")
      headers[name] = value
   end
   n = 0
   ok = 0
   bad = 0
   first_bad = ""
end

function request()
   n = n + 1
   local value
   if values then
      value = values[(n - 1) % #values + 1]
   else
      value = "Bench/Writes/w" .. thread_id .. "-" .. n
   end
   return wrk.format("POST", nil, headers, part1 .. n .. part2 .. value .. part3)
end

function response(status, hdrs, body)
   if status == 200 and body:find('"isError":%s*false') then
      ok = ok + 1
      if acks then
         local path = body:match('"structuredContent":%s*{[^}]-"path":%s*"([^"]*)"')
         local revision = body:match('"structuredContent":%s*{[^}]-"revision":%s*"([^"]*)"')
         acks:write((path or "?") .. "\t" .. (revision or "?") .. "\n")
         acks:flush()
      end
   else
      bad = bad + 1
      if first_bad == "" then first_bad = status .. " " .. body:sub(1, 300) end
   end
end

function done(summary, latency, requests)
   local ok_total, bad_total, sample = 0, 0, ""
   for _, thread in ipairs(threads) do
      ok_total = ok_total + thread:get("ok")
      bad_total = bad_total + thread:get("bad")
      if sample == "" then sample = thread:get("first_bad") end
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "ok": %d, "bad": %d, "errors": {"connect": %d, ' ..
      '"read": %d, "write": %d, "status": %d, "timeout": %d}, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
      '"max_us": %d, "mean_us": %.1f, "first_bad": "%s"}\n',
      summary.requests, summary.duration, ok_total, bad_total, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, (sample:gsub('[%c"\\]', "?"))))
end
