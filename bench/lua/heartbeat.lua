-- wrk -s bench/lua/heartbeat.lua URL -- ROWS_FILE
-- ROWS_FILE lines: "<bearer token> <node id>" (real tokens of seeded, attached nodes).
-- Each request is a heartbeat of a random node with its owner's token. Requests are formatted
-- once per thread so the load generator spends its CPU on sockets, not on Lua.
local report = dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
local reqs = {}

setup = report.setup
done = report.done

function init(args)
  report.seed()
  for _, row in ipairs(report.read_rows(args[1])) do
    reqs[#reqs + 1] = wrk.format("POST", "/v1/runtime-nodes/" .. row[2] .. "/heartbeat", {
      ["Authorization"] = "Bearer " .. row[1],
      ["Content-Type"] = "application/json",
    }, '{"healthState":"online"}')
  end
end

function request()
  return reqs[math.random(#reqs)]
end
