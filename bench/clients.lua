-- wrk script for bench/run.sh (WRK_SCRIPT=bench/clients.lua): each request names one of 64
-- clients in X-Client, so a rate limit keyed by `header:X-Client` keeps 64 buckets, each well
-- below its limit, the way a limit meets many clients.
local n = 0

request = function()
    n = n + 1
    return wrk.format(nil, nil, { ["X-Client"] = "client-" .. (n % 64) })
end
