-- GETs /authors/{id} for ids cycling through 1..AUTHORS.
local n = tonumber(os.getenv("AUTHORS") or "20")
local i = 0
request = function()
  i = i % n + 1
  return wrk.format("GET", "/authors/" .. i)
end
local bad = 0
response = function(status)
  if status ~= 200 then bad = bad + 1 end
end
done = function() io.write(string.format("bad %d\n", bad)) end
