-- luacheck configuration: handlers, the test kit and specs are Lua 5.4.
std = "lua54"
max_line_length = 120

-- busted's globals (describe, it, assert, spy, ...) in spec files only.
files["handlers/spec/*_spec.lua"] = { std = "+busted" }
files["tests/lua/*_spec.lua"] = { std = "+busted" }
