#!/bin/bash
# Bake cnivpc into a node image (Packer shell provisioner, or by hand on a builder instance).
#
#   ./ami-bake.sh <path-to-cnivpc-zipapp> [python]
#
# The zipapp was built for one CPython minor version (its shebang names the interpreter and
# pydantic-core is compiled for it): the image must have that python. The install pre-extracts
# the zipapp so the first pod on a fresh node pays no extraction, enables the GC timer, and
# enables cnivpc-warm.service, which fills the IP pool at boot before kubelet starts (so the
# first pods do not each wait for an ENI).
set -euo pipefail
zipapp=${1:?usage: ami-bake.sh <cnivpc zipapp> [python]}
python=${2:-/usr/bin/python3}

want=$(head -1 "$zipapp" | sed -e 's/^#!//' -e 's/ .*//')
[[ -x $want ]] || { echo "error: the zipapp needs $want, which this image lacks" >&2; exit 1; }
[[ $python == "$want" ]] || echo "note: the zipapp runs with $want (its shebang), not $python" >&2

# Extra install flags (e.g. --subnet-tag cnivpc=pods --security-group sg-...) word-split on purpose.
# shellcheck disable=SC2086
"$want" "$zipapp" install --source "$zipapp" ${CNIVPC_INSTALL_ARGS:-}
install -m 0644 "$(dirname "$0")/systemd/cnivpc-gc.service" /etc/systemd/system/
install -m 0644 "$(dirname "$0")/systemd/cnivpc-gc.timer" /etc/systemd/system/
install -m 0644 "$(dirname "$0")/systemd/cnivpc-warm.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable cnivpc-gc.timer cnivpc-warm.service
/opt/cni/bin/cnivpc version
