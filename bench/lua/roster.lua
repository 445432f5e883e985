-- wrk -s bench/lua/roster.lua URL -- ROWS_FILE
-- ROWS_FILE lines: "<bearer token> <session id>": a member reading a 100-node session's roster.
local report = dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
local reqs = {}

setup = report.setup
done = report.done

function init(args)
  report.seed()
  for _, row in ipairs(report.read_rows(args[1])) do
    reqs[#reqs + 1] = wrk.format("GET", "/v1/sessions/" .. row[2] .. "/runtime-nodes", {
      ["Authorization"] = "Bearer " .. row[1],
    })
  end
end

function request()
  return reqs[math.random(#reqs)]
end
