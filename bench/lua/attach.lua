-- wrk -s bench/lua/attach.lua URL -- ROWS_FILE
-- ROWS_FILE lines: "<bearer token> <session id> <participant id> <node id>".
-- An attach of a random node by its owner: the first one inserts the slot, later ones are the
-- reconnect/re-handshake upsert (back to registering), as daemons do after a restart.
local report = dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
local reqs = {}

setup = report.setup
done = report.done

function init(args)
  report.seed()
  for _, row in ipairs(report.read_rows(args[1])) do
    local body = string.format(
      '{"participantId":"%s","nodeId":"%s","clientVersion":"1.4","healthState":"online",'
        .. '"capabilities":{"os":"linux","arch":"x86_64","cpus":16,"memoryMiB":65536,'
        .. '"tools":["git","python3.11","node20","cargo"],"sandbox":"bwrap"}}', row[3], row[4])
    reqs[#reqs + 1] = wrk.format("POST", "/v1/sessions/" .. row[2] .. "/runtime-nodes", {
      ["Authorization"] = "Bearer " .. row[1],
      ["Content-Type"] = "application/json",
    }, body)
  end
end

function request()
  return reqs[math.random(#reqs)]
end
