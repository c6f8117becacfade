-- POSTs the GraphQL document in GQL_BODY (a JSON request body) to the endpoint; counts
-- answers that are not a clean 200 without "errors".
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("GQL_BODY")
local bad = 0
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    bad = bad + 1
  end
end
done = function(summary, latency, requests)
  io.write(string.format("bad %d\n", bad))
end
