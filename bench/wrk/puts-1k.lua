-- wrk -s puts-1k.lua URL -- dialect=etcd|stcache|seed   (see kv.lua; arguments override these defaults)
kv_defaults = { reads = 0, value = 1024, keys = 10000 }
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "kv.lua")
