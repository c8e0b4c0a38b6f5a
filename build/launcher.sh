#!/bin/sh
# cnivpc: a Python zip application behind this shell prologue (a zip archive may start with any
# bytes). The prologue picks the interpreter, since no single path names a supported CPython on
# every node (Amazon Linux 2023's python3 is 3.9; Ubuntu 22.04 has 3.10, 24.04 3.12, Debian 12
# 3.11): $CNIVPC_PYTHON if set, else the first line of cnivpc.python beside this file, else the
# newest python3.14 ... python3.10 on PATH; then it execs that interpreter on this same file.
# "$0" is the path the runtime exec'd (cnivpc-ipam, a symlink), so Python's sys.argv[0] keeps it
# and the plugin dispatch by name works as before.
p=${CNIVPC_PYTHON:-}
if [ -z "$p" ] && [ -r "${0%/*}/cnivpc.python" ]; then
    read -r p <"${0%/*}/cnivpc.python" || :
fi
if [ -z "$p" ]; then
    # A runtime exec'ing plugins with no PATH at all gets the usual one for the search (not
    # exported: the plugin's own environment stays what the runtime gave).
    : "${PATH:=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
    # The PATH walk is by hand (built-ins only, no fork) so that version managers' shim
    # directories (pyenv, asdf: .../shims) are skipped: a shim obeys its own configuration,
    # may refuse ("pyenv: python3.13: command not found") and costs ~100 ms per exec.
    set -f
    for v in 14 13 12 11 10; do
        IFS=:
        for d in $PATH; do
            case $d in '' | */shims | */shims/) continue ;; esac
            if [ -f "$d/python3.$v" ] && [ -x "$d/python3.$v" ]; then p=$d/python3.$v; break 2; fi
        done
    done
    unset IFS
fi
bad=
if [ -n "$p" ] && ! command -v "$p" >/dev/null 2>&1; then bad=$p p=; fi
# -sSE: no user site, no site module (nothing of the node's Python packages is imported or can
# shadow what this file carries), no PYTHON* variables from the runtime's environment.
if [ -n "$p" ]; then
    # Every run after the first: this build is already extracted (shiv moves a finished
    # extraction into place in one rename), so start from there and skip the archive: Python
    # would read its central directory, load zipimport and runpy, and run its __main__ only to
    # be sent to the same files (~5 ms of CPU and ~180 page faults per exec on a host, 20-45 ms
    # in user-mode-linux; measured). Any shiv setting but SHIV_ROOT (these are all the ones
    # shiv reads), or a root that needs ~ expanded, takes the archive's own way, as before.
    # "$0" goes along: the entry makes it sys.argv[0] again, for the dispatch by name.
    s=${SHIV_INTERPRETER+1}${SHIV_ENTRY_POINT+1}${SHIV_CONSOLE_SCRIPT+1}${SHIV_MODULE+1}
    s=$s${SHIV_FORCE_EXTRACT+1}${SHIV_COMPILE_PYC+1}${SHIV_COMPILE_WORKERS+1}
    s=$s${SHIV_EXTEND_PYTHONPATH+1}${SHIV_PREPEND_PYTHONPATH+1}
    r=${SHIV_ROOT:-@ROOT@}
    case $s:$r in
        :'~'*) ;;
        :*) e=$r/cnivpc_@BUILD_ID@/site-packages/@ENTRY@
            [ -f "$e" ] && exec "$p" -sSE "$e" "$0" "$@" ;;
    esac
    exec "$p" -sSE "$0" "$@"
fi
if [ -n "$bad" ]; then
    echo "cnivpc: the interpreter named by CNIVPC_PYTHON or ${0%/*}/cnivpc.python ($bad)" \
        "is not an executable" >&2
else
    echo "cnivpc: no supported Python: needs CPython 3.10 to 3.14 (none of python3.14 ..." \
        "python3.10 is on PATH=${PATH:-}, shims skipped); install one (e.g. dnf install" \
        "python3.12), or name one in CNIVPC_PYTHON or in ${0%/*}/cnivpc.python" >&2
fi
case ${0##*/} in
    cnivpc-*) ;;
    *) [ -n "${CNI_COMMAND:-}" ] || exit 127 ;;
esac
# Run as a CNI plugin: a DEL succeeds (nothing can have been set up on this node by a plugin
# that cannot start), anything else gets a CNI error on stdout in the config's cniVersion.
[ "${CNI_COMMAND:-}" = DEL ] && exit 0
# Shell built-ins only: a runtime's PATH may hold no sed.
ver=
if [ ! -t 0 ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in
            *'"cniVersion"'*)
                ver=${line#*'"cniVersion"'} ver=${ver#*'"'} ver=${ver%%'"'*}
                break ;;
        esac
    done
fi
case $ver in '' | *[!0-9.]*) ver=1.0.0 ;; esac
msg='cnivpc: no supported Python (CPython 3.10 to 3.14) on this node'
details='install python3.10 or newer, or name one in CNIVPC_PYTHON or'
printf '{"cniVersion": "%s", "code": 50, "msg": "%s", "details": "%s %s/cnivpc.python"}\n' \
    "$ver" "$msg" "$details" "${0%/*}"
exit 1
