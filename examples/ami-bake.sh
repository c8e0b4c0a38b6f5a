#!/bin/bash
# Bake cnivpc into a node image (Packer shell provisioner, or by hand on a builder instance).
#
#   ./ami-bake.sh <path-to-cnivpc-zipapp>
#
# Amazon Linux 2023, Ubuntu 22.04/24.04 and Debian 12 (README, "What a node needs"):
# 1. a CPython 3.10-3.14 on PATH as python3.X (the zipapp's launcher picks the newest). When
#    there is none, the distribution's package is installed: python3.11 on Amazon Linux 2023
#    (its python3 is 3.9, too old), python3 on Ubuntu 22.04 (3.10), 24.04 (3.12) and Debian 12
#    (3.11);
# 2. iptables, either backend (ptp's masquerade): iptables-nft on Amazon Linux 2023, iptables
#    on Debian and Ubuntu (nf_tables by default there; legacy works the same);
# 3. cnivpc install (binary, plugin symlinks, conflist, pre-extraction so the first pod on a
#    fresh node pays none), the GC timer, and cnivpc-warm.service, which fills the IP pool at
#    boot before kubelet starts (so the first pods do not each wait for an ENI). The units go to
#    /etc/systemd/system, the administrator's unit directory on all four.
#
# CNIVPC_BAKE_ROOT=/mnt/image bakes into a mounted image root instead of / (units enabled with
# systemctl --root; the packages of steps 1-2 are still installed on the running system, so
# run it inside the image's chroot when those are missing there). CNIVPC_INSTALL_ARGS adds
# install flags (e.g. --subnet-tag cnivpc=pods --security-group sg-...).
set -euo pipefail
zipapp=${1:?usage: ami-bake.sh <cnivpc zipapp>}
root=${CNIVPC_BAKE_ROOT:-/}
here=$(dirname "$0")

say() { printf 'ami-bake: %s\n' "$*" >&2; }

distro() {  # the os-release ID: amzn, ubuntu, debian, ...
    local id=
    # shellcheck disable=SC1090,SC1091
    local file=${OS_RELEASE:-/etc/os-release}
    [[ -r $file ]] && id=$(. "$file" && echo "${ID:-}")
    echo "$id"
}

supported_python() {  # the newest python3.14 ... python3.10 on PATH, if any
    local v
    for v in 14 13 12 11 10; do
        command -v "python3.$v" && return 0
    done
    return 1
}

pkg_install() {
    case $(distro) in
        amzn | fedora | rhel | centos | rocky | almalinux) dnf install -y "$@" ;;
        debian | ubuntu)
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y "$@" || { apt-get update && apt-get install -y "$@"; } ;;
        *) say "error: unknown distribution '$(distro)': install $* yourself"; exit 1 ;;
    esac
}

if ! python=$(supported_python); then
    case $(distro) in
        amzn) pkg=python3.11 ;;
        *) pkg=python3 ;;
    esac
    say "no CPython 3.10-3.14 on PATH: installing $pkg"
    pkg_install "$pkg"
    python=$(supported_python) \
        || { say "error: still no python3.10+ after installing $pkg"; exit 1; }
fi
say "python: $python"

if ! command -v iptables >/dev/null; then
    case $(distro) in
        amzn) pkg=iptables-nft ;;
        *) pkg=iptables ;;
    esac
    say "no iptables: installing $pkg"
    pkg_install "$pkg"
fi

# The zipapp runs through its own launcher here, as the runtime will run it on the node.
# Extra install flags word-split on purpose.
# shellcheck disable=SC2086
sh "$zipapp" install --source "$zipapp" --root "$root" ${CNIVPC_INSTALL_ARGS:-}
units=${root%/}/etc/systemd/system
mkdir -p "$units"
for unit in cnivpc-gc.service cnivpc-gc.timer cnivpc-warm.service; do
    install -m 0644 "$here/systemd/$unit" "$units/"
done
if [[ $root == / ]]; then
    systemctl daemon-reload
    systemctl enable cnivpc-gc.timer cnivpc-warm.service
else
    systemctl --root "$root" enable cnivpc-gc.timer cnivpc-warm.service
fi
"${root%/}/opt/cni/bin/cnivpc" version
