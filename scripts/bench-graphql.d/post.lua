-- POSTs the GraphQL document in GQL_BODY (a JSON request body) to the endpoint; counts
-- answers that are not a clean 200 without "errors".
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("GQL_BODY")
-- Each wrk thread has its own Lua state: count per thread, sum in done().
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
bad = 0
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    bad = bad + 1
  end
end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("bad")
  end
  io.write(string.format("bad %d\n", total))
end
