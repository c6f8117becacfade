-- GETs /authors/{id} for ids cycling through 1..AUTHORS.
local n = tonumber(os.getenv("AUTHORS") or "20")
local i = 0
request = function()
  i = i % n + 1
  return wrk.format("GET", "/authors/" .. i)
end
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
