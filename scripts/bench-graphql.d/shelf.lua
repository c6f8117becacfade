-- GETs /shelf?limit=20 (the REST form of gql-nested: 20 authors, their books, the books'
-- reviews); counts answers that are not a 200.
wrk.method = "GET"
wrk.path = "/shelf?limit=20"
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
bad = 0
response = function(status)
  if status ~= 200 then bad = bad + 1 end
end
done = function()
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("bad")
  end
  io.write(string.format("bad %d\n", total))
end
