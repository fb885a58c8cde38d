# Turns a file into a C++ source defining `const char* const <NAME>` (its bytes, NUL-ended), so
# the live page is part of the binary and works from a fresh build wherever it runs.
#   cmake -DIN=file -DOUT=file.cpp -DNAME=push::kDashboardHtml -P embed.cmake
file(READ "${IN}" content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
string(REGEX MATCH "^(.*)::([^:]+)$" _ "${NAME}")
set(ns "${CMAKE_MATCH_1}")
set(var "${CMAKE_MATCH_2}")
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by embed.cmake: do not edit.\nnamespace ${ns} {\nnamespace {\nconst char kBytes[] = {${bytes}0x00};\n}\nextern const char* const ${var};\nconst char* const ${var} = kBytes;\n}\n")
file(RENAME "${OUT}.tmp" "${OUT}")
