-- wrk -s bench/lua/hello_post.lua URL -- ROWS_FILE
-- The heartbeat's request without the database: POST /bench/hello-post/<node id> with the
-- owner's bearer token and the same body (path check, bearer digest, strict body decode, 204).
-- Needs the app started with CONTROL_PLANE_BENCH_ROUTES=1 (bench/run.sh does).
local report = dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
local reqs = {}

setup = report.setup
done = report.done

function init(args)
  report.seed()
  for _, row in ipairs(report.read_rows(args[1])) do
    reqs[#reqs + 1] = wrk.format("POST", "/bench/hello-post/" .. row[2], {
      ["Authorization"] = "Bearer " .. row[1],
      ["Content-Type"] = "application/json",
    }, '{"healthState":"online"}')
  end
end

function request()
  return reqs[math.random(#reqs)]
end
