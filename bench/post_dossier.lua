-- post_dossier.lua: wrk script for POST /v1/dossiers (bench/run.sh).
--
--   BENCH_DOSSIER_BODY=FILE BENCH_API_KEY=KEY wrk -s bench/post_dossier.lua URL -- NONCE [idem]
--
-- KEY is an API key that may submit online (scope citizen_portal: the provincial
-- portal submitting on the citizen's behalf).
-- Every request posts the same submission, read from BENCH_DOSSIER_BODY (bench/run.sh
-- writes one valid for a procedure of the catalog in deploy/data). With `idem`, each
-- request carries an Idempotency-Key of its own (NONCE, thread and counter), so every
-- one creates a dossier through the idempotency path. done() prints one `BENCH ...` line
-- that bench/run.sh parses: counts, non-2xx responses, socket errors, latency
-- percentiles in microseconds.

local function read_body()
    local path = os.getenv("BENCH_DOSSIER_BODY")
    local f = path and io.open(path, "rb")
    if not f then
        error("set BENCH_DOSSIER_BODY to a file holding the JSON body")
    end
    local text = f:read("*a")
    f:close()
    return text
end

local body = read_body()
local key = os.getenv("BENCH_API_KEY")
if not key or key == "" then
    error("set BENCH_API_KEY to a key of scope citizen_portal")
end
local authorization = "Bearer " .. key

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = authorization

local next_thread = 1

function setup(thread)
    thread:set("tid", next_thread)
    next_thread = next_thread + 1
end

function init(args)
    nonce = args[1] or tostring(os.time())
    idem = args[2] == "idem"
    n = 0
end

function request()
    if not idem then
        return wrk.format()
    end
    n = n + 1
    return wrk.format(nil, nil, {
        ["Content-Type"] = "application/json",
        ["Authorization"] = authorization,
        ["Idempotency-Key"] = string.format("bench-%s-%d-%d", nonce, tid, n),
    }, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
        "p50=%d p90=%d p99=%d max=%d\n",
        summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
