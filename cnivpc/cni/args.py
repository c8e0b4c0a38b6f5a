"""CNI_ARGS (``K=V;K=V``) and the Kubernetes keys runtimes put in it: parsed and validated
here, once, for every plugin (``validate_cni_args`` is the env table's check of CNI_ARGS).

libcni's rules: pairs separated by ';', each exactly one '=' with a non-empty key (``a=b=c`` is
an invalid pair). Ours on top, because these values end up in the IPAM store, in log lines and
in ``cnivpc ipam allocations``: no control characters in keys or values, no whitespace in keys,
and the Kubernetes keys must be made of the characters a container ID may have
(``[a-zA-Z0-9][a-zA-Z0-9_.-]*``, a superset of the DNS names Kubernetes gives namespaces and
pods: runtimes and test harnesses that reuse a container ID as the pod name stay valid) and no
longer than Kubernetes allows (namespace 63, name 253). A pod name with an ESC from a hostile
Multus annotation is refused at ADD (code 4); DEL sets an unusable CNI_ARGS aside (the env
table's rule).

Requested addresses (``requested_ips``): the conventions of the reference host-local IPAM,
which runtimes follow: ``IP=`` in CNI_ARGS (podman's ``--ip``/``--ip6``; several separated by
commas) and ``runtimeConfig.ips`` (the ``ips`` capability: Multus' static IPs), each an address
with or without a prefix length.

Stdlib only; imports nothing of cnivpc but ``cni.errors``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import InvalidConfig, InvalidEnvironment

if TYPE_CHECKING:
    import ipaddress

MAX_LENGTH = 64 * 1024
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
_KEY_RE = re.compile(r"[!-~]+")  # printable ASCII, no space ('=' and ';' cannot occur)
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
# The Kubernetes keys: what characters, how long (Kubernetes' own limits: a namespace is a
# DNS label, a pod name a DNS subdomain; UIDs are UUIDs).
_WHAT = "[a-zA-Z0-9][a-zA-Z0-9_.-]*"
K8S_RULES: dict[str, tuple[re.Pattern[str], int, str]] = {
    "K8S_POD_NAMESPACE": (_NAME, 63, f"a namespace ({_WHAT}, at most 63)"),
    "K8S_POD_NAME": (_NAME, 253, f"a pod name ({_WHAT}, at most 253)"),
    "K8S_POD_INFRA_CONTAINER_ID": (_NAME, 1024, f"a container ID ({_WHAT})"),
    "K8S_POD_UID": (re.compile(r"[a-zA-Z0-9\-]+"), 128, "a UID ([a-zA-Z0-9-], at most 128)"),
}


def parse_cni_args(raw: str) -> dict[str, str]:
    """Split ``K=V;K=V``. A pair without exactly one '=', or with an empty key, is an error
    (code 4), as in libcni."""
    out: dict[str, str] = {}
    for pair in raw.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key or "=" in value:
            raise InvalidEnvironment(f"CNI_ARGS: invalid pair {pair!r}, expected KEY=VALUE")
        out[key] = value
    return out


def cni_args_problem(raw: str) -> str | None:
    """Why ``raw`` is not an acceptable CNI_ARGS, or None (the env table's check)."""
    if len(raw) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH} characters"
    try:
        args = parse_cni_args(raw)
    except InvalidEnvironment as exc:
        return exc.msg.removeprefix("CNI_ARGS: ")
    for key, value in args.items():
        if not _KEY_RE.fullmatch(key):
            return f"key {key!r} must be printable ASCII without spaces"
        if _CONTROL_RE.search(value):
            return f"{key}: value {value!r} contains control characters"
        rule = K8S_RULES.get(key)
        if rule is not None and value:
            pattern, longest, what = rule
            if len(value) > longest or not pattern.fullmatch(value):
                return f"{key}={value!r} is not {what}"
    return None


# A NamedTuple, not a dataclass: the plugin path never imports dataclasses (with inspect and
# ast it costs ~6 ms per exec, and each class ~0.4 ms to create; a NamedTuple 0.06 ms).
class PodRef(NamedTuple):
    """The pod a sandbox belongs to, as containerd and CRI-O report it (may be empty)."""

    namespace: str = ""
    name: str = ""
    infra_container_id: str = ""
    uid: str = ""

    @classmethod
    def from_cni_args(cls, raw: str) -> PodRef:
        args = parse_cni_args(raw)
        return cls(
            namespace=args.get("K8S_POD_NAMESPACE", ""),
            name=args.get("K8S_POD_NAME", ""),
            infra_container_id=args.get("K8S_POD_INFRA_CONTAINER_ID", ""),
            uid=args.get("K8S_POD_UID", ""),
        )

    def __str__(self) -> str:
        # podman (and any runtime outside Kubernetes) sends K8S_POD_NAME, the container's name,
        # without a namespace: that is the name alone, not "/name".
        if not self.name:
            return ""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def requested_ips(raw_args: str, runtime_config: Mapping[str, Any]
                  ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses the runtime asks for: CNI_ARGS ``IP=`` then ``runtimeConfig.ips``, each
    once, in order. One that is not an address is a code-7 error naming where it came from."""
    import ipaddress  # only the IPAM asks: the other plugins never pay for it here

    wanted: list[tuple[str, str]] = []
    value = parse_cni_args(raw_args).get("IP", "")
    wanted += [("CNI_ARGS IP", v) for v in value.split(",") if v.strip()]
    ips = runtime_config.get("ips") if isinstance(runtime_config, Mapping) else None
    if ips is not None:
        if not isinstance(ips, list) or not all(isinstance(v, str) for v in ips):
            raise InvalidConfig("runtimeConfig.ips must be a list of addresses",
                                f"got {str(ips)[:100]!r}")
        wanted += [("runtimeConfig.ips", v) for v in ips]
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for where, text in wanted:
        try:
            address = ipaddress.ip_interface(text.strip()).ip
        except ValueError:
            raise InvalidConfig(f"{where}: {text[:64]!r} is not an IP address") from None
        if address not in out:
            out.append(address)
    return out
