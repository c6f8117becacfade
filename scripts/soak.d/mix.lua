-- wrk script of scripts/soak: a fixed rotation over read and write endpoints (some reads
-- ask for a replica), and at the end one line with the segment's figures:
--   SEGMENT requests=N p50_ms=.. p99_ms=.. max_ms=.. status_2xx=N status_503=N ... connect=N read=N write=N timeout=N
local paths = {
    { "/db", nil },
    { "/fortunes", nil },
    { "/updates?q=2", nil },
    { "/db", "replica-preferred" },
    { "/fortunes", "replica-preferred" },
}
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    n = 0
    statuses = {}
end

function request()
    n = n + 1
    local p = paths[(n % #paths) + 1]
    local headers = {}
    if p[2] then
        headers["Lifeguard-Read-Preference"] = p[2]
    end
    return wrk.format("GET", p[1], headers)
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for code, count in pairs(t:get("statuses")) do
            total[code] = (total[code] or 0) + count
        end
    end
    local codes = {}
    for code in pairs(total) do
        table.insert(codes, code)
    end
    table.sort(codes)
    local parts = {}
    for _, code in ipairs(codes) do
        table.insert(parts, string.format("status_%d=%d", code, total[code]))
    end
    local e = summary.errors
    io.write(string.format("SEGMENT requests=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f %s connect=%d read=%d write=%d timeout=%d\n",
        summary.requests, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency.max / 1000, table.concat(parts, " "), e.connect, e.read, e.write, e.timeout))
end
