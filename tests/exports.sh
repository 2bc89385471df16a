#!/bin/sh
# The shared library exports exactly the public API: the names listed in
# tests/exports.txt, each declared WS_API in include/wsched.h.
set -eu
src=${top_srcdir:-.}
build=${top_builddir:-.}
lib=$build/.libs/libwsched.so
[ -f "$lib" ] || { echo "exports: $lib not built"; exit 1; }
tmp=${TMPDIR:-/tmp}/wsched-exports.$$
trap 'rm -f "$tmp".*' EXIT
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' |
    sed 's/@.*//' | sort -u >"$tmp.lib"
sort -u "$src/tests/exports.txt" >"$tmp.want"
grep -oE 'WS_API[^;(]*\bws_[a-z0-9_]+ *\(' "$src/include/wsched.h" |
    grep -oE 'ws_[a-z0-9_]+ *\($' | tr -d ' (' | sort -u >"$tmp.hdr"
status=0
if ! cmp -s "$tmp.lib" "$tmp.want"; then
    echo "exports: libwsched.so and tests/exports.txt differ (< library, > list):"
    diff "$tmp.lib" "$tmp.want" || true
    status=1
fi
if ! cmp -s "$tmp.hdr" "$tmp.want"; then
    echo "exports: wsched.h and tests/exports.txt differ (< header, > list):"
    diff "$tmp.hdr" "$tmp.want" || true
    status=1
fi
[ $status -eq 0 ] && echo "exports: $(wc -l <"$tmp.want") symbols, as listed"
exit $status
