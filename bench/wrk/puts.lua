-- wrk -s puts.lua URL -- dialect=etcd|stcache|seed   (see kv.lua; arguments override these defaults)
kv_defaults = { reads = 0, value = 100, keys = 10000 }
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "kv.lua")
