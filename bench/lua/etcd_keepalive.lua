-- wrk -s bench/lua/etcd_keepalive.lua http://127.0.0.1:PORT -- LEASES_FILE
-- LEASES_FILE lines: "<lease id>" (decimal). Each request renews one random lease through
-- etcd's gRPC-gateway (POST /v3/lease/keepalive), etcd's equivalent of our heartbeat.
local report = dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
local reqs = {}

setup = report.setup
done = report.done

function init(args)
  report.seed()
  for _, row in ipairs(report.read_rows(args[1])) do
    reqs[#reqs + 1] = wrk.format("POST", "/v3/lease/keepalive",
      { ["Content-Type"] = "application/json" }, '{"ID":"' .. row[1] .. '"}')
  end
end

function request()
  return reqs[math.random(#reqs)]
end
