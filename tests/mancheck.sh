#!/bin/sh
# mancheck.sh SRCDIR: check the manual pages under SRCDIR/man against the
# public header SRCDIR/include/wsched.h.
#
# Every public call must have a page that names it with .Nm, and
# `man ws_<call>` must find it: each name a page gives with .Nm has a file
# of its own, the page itself or a link page holding `.so manN/<page>.N`.
# A link page must point to a page that names it; an .Xr to a wsched page
# (ws_* or wsched) must point to a page that exists; wsched(7) lists every
# ws_* page in SEE ALSO; and `mandoc -Tlint -Wwarning` must print nothing
# for any page.  Link pages are not linted: mandoc always calls .so
# fragile, and the page they point to is linted in its own right.
#
# Prints one line per problem and exits 1 if there is any, 0 otherwise.
# MANDOC names the mandoc program (default: mandoc from PATH).

LC_ALL=C
export LC_ALL

me=mancheck
if [ $# -gt 1 ]; then
    echo "usage: $0 [SRCDIR]" >&2
    exit 2
fi
srcdir=${1:-${srcdir:-.}}
header=$srcdir/include/wsched.h
mandir=$srcdir/man
mandoc=${MANDOC:-mandoc}

if [ ! -r "$header" ]; then
    echo "$me: $header: no such header" >&2
    exit 2
fi
if [ ! -d "$mandir" ]; then
    echo "$me: $mandir: no such directory" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mancheck.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

problems=0
problem() {
    echo "$me: $*"
    problems=$((problems + 1))
}

# The public calls: every `ws_<name> (` in a declaration that carries
# WS_API, after comments and preprocessor lines are removed.
awk '
    BEGIN { incomment = 0; cont = 0; buf = "" }
    {
        line = $0
        # A preprocessor line, and its continuation lines, declare nothing.
        if (cont || (!incomment && line ~ /^[ \t]*#/)) {
            cont = (line ~ /\\$/)
            next
        }
        out = ""
        while (line != "") {
            if (incomment) {
                if (match(line, /\*\//)) {
                    line = substr(line, RSTART + 2)
                    incomment = 0
                } else {
                    line = ""
                }
            } else if (match(line, /\/\*/)) {
                out = out substr(line, 1, RSTART - 1) " "
                line = substr(line, RSTART + 2)
                incomment = 1
            } else if (match(line, /\/\//)) {
                out = out substr(line, 1, RSTART - 1)
                line = ""
            } else {
                out = out line
                line = ""
            }
        }
        buf = buf " " out
    }
    END {
        n = split(buf, decl, ";")
        for (i = 1; i <= n; i++) {
            d = " " decl[i]
            if (d !~ /[^A-Za-z0-9_]WS_API[^A-Za-z0-9_]/)
                continue
            while (match(d, /[^A-Za-z0-9_]ws_[a-z0-9_]+ *\(/)) {
                name = substr(d, RSTART + 1, RLENGTH - 1)
                sub(/ *\($/, "", name)
                print name
                d = substr(d, RSTART + RLENGTH)
            }
        }
    }
' "$header" | sort -u >"$tmp/calls"

if [ ! -s "$tmp/calls" ]; then
    problem "$header: no WS_API call found"
fi

# Pages: manN/<name>.N under SRCDIR/man.  A link page is one whose first
# line that is not a comment is a .so request.
find "$mandir" -type f -path "$mandir/man[1-9]*/*" -name '*.[1-9]*' |
    sort >"$tmp/pages"
: >"$tmp/links"
: >"$tmp/real"
: >"$tmp/names"
while IFS= read -r page; do
    rel=${page#"$mandir"/}
    so=$(awk '/^\.\\"/ { next } { print; exit }' "$page")
    case $so in
    .so\ *|.so\	*)
        printf '%s %s\n' "$rel" "$(echo "$so" | awk '{ print $2 }')" \
            >>"$tmp/links"
        ;;
    *)
        echo "$rel" >>"$tmp/real"
        # The names the page gives: the first argument of each .Nm in
        # its NAME section.
        awk -v rel="$rel" '
            /^\.Sh[ \t]/ { inname = ($2 == "NAME") }
            inname && /^\.Nm[ \t]/ {
                name = $2
                gsub(/"/, "", name)
                if (name ~ /^[A-Za-z_][A-Za-z0-9_.-]*$/)
                    print rel, name
            }
        ' "$page" >>"$tmp/names"
        ;;
    esac
done <"$tmp/pages"

if [ ! -s "$tmp/pages" ]; then
    problem "$mandir: no page found"
fi

# Every public call is named by some page.
while IFS= read -r call; do
    if ! awk -v c="$call" '$2 == c { found = 1 } END { exit !found }' \
        "$tmp/names"; then
        problem "$call: no page names it with .Nm" \
            "(declared in include/wsched.h)"
    fi
done <"$tmp/calls"

# Every name a page gives has a file of its own in the page's section.
while read -r rel name; do
    dir=${rel%%/*}
    sec=${dir#man}
    if [ ! -f "$mandir/$dir/$name.$sec" ]; then
        problem "$rel: names $name with .Nm, but $dir/$name.$sec" \
            "does not exist (add a link page: .so $rel)"
    fi
done <"$tmp/names"

# Every link page points to a page that exists and names it.
while read -r rel target; do
    base=${rel##*/}
    name=${base%.*}
    if [ -z "$target" ]; then
        problem "$rel: .so names no page"
    elif [ ! -f "$mandir/$target" ]; then
        problem "$rel: links to $target, which does not exist"
    elif ! awk -v t="$target" -v n="$name" \
        '$1 == t && $2 == n { found = 1 } END { exit !found }' \
        "$tmp/names"; then
        problem "$rel: links to $target, which does not name $name" \
            "with .Nm"
    fi
done <"$tmp/links"

# Every .Xr to a wsched page points to a page that exists.  .Xr may open
# a macro line or be called from another macro on it.
while IFS= read -r rel; do
    awk '
        /^\./ {
            for (i = 1; i < NF; i++) {
                if ($i != ".Xr" && !(i > 1 && $i == "Xr"))
                    continue
                name = $(i + 1)
                sec = (i + 2 <= NF) ? $(i + 2) : ""
                gsub(/"/, "", name)
                if (name ~ /^ws_/ || name == "wsched")
                    print FNR, name, sec
            }
        }
    ' "$mandir/$rel" | while read -r lineno name sec; do
        case $sec in
        [1-9]) ;;
        *)
            echo "$me: $rel:$lineno: .Xr $name has no section number"
            continue
            ;;
        esac
        if [ ! -f "$mandir/man$sec/$name.$sec" ]; then
            echo "$me: $rel:$lineno: .Xr $name $sec: no such page" \
                "(man$sec/$name.$sec)"
        fi
    done
done <"$tmp/real" >"$tmp/xr"
# The loop above runs in a pipeline, so count its problems here.
if [ -s "$tmp/xr" ]; then
    cat "$tmp/xr"
    problems=$((problems + $(wc -l <"$tmp/xr")))
fi

# wsched(7) lists every ws_* page in SEE ALSO.
overview=$mandir/man7/wsched.7
if [ -f "$overview" ]; then
    awk '
        /^\.Sh / { insee = ($0 == ".Sh SEE ALSO") }
        insee && /^\.Xr / { print $2 "." $3 }
    ' "$overview" | sort -u >"$tmp/seealso"
    while IFS= read -r page; do
        base=${page##*/}
        case $base in
        ws_*) ;;
        *) continue ;;
        esac
        if ! grep -qxF "$base" "$tmp/seealso"; then
            problem "man7/wsched.7: SEE ALSO does not list" \
                "${base%.*}(${base##*.})"
        fi
    done <"$tmp/pages"
fi

# mandoc -Tlint -Wwarning prints nothing for any page but link pages.
if ! command -v "$mandoc" >/dev/null 2>&1; then
    problem "$mandoc not found: install the Debian package mandoc," \
        "or set MANDOC"
else
    while IFS= read -r rel; do
        out=$(cd "$mandir" && "$mandoc" -Tlint -Wwarning "$rel" 2>&1)
        status=$?
        if [ -n "$out" ]; then
            echo "$out" | sed "s/^/$me: /"
            problems=$((problems + $(echo "$out" | wc -l)))
        elif [ $status -ne 0 ]; then
            problem "$rel: mandoc exited with status $status"
        fi
    done <"$tmp/real"
fi

npages=$(wc -l <"$tmp/pages")
ncalls=$(wc -l <"$tmp/calls")
if [ "$problems" -ne 0 ]; then
    echo "$me: $problems problem(s) in $npages pages for $ncalls calls"
    exit 1
fi
echo "$me: $npages pages for $ncalls calls: no problem"
exit 0
