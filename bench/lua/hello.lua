-- wrk -s bench/lua/hello.lua URL: GET /healthz (no database, no body), the server's ceiling.
local report = dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
local req

setup = report.setup
done = report.done

function init(args)
  req = wrk.format("GET", "/healthz")
end

function request()
  return req
end
