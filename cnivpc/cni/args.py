"""CNI_ARGS (``K=V;K=V``) and the Kubernetes keys runtimes put in it.

Stdlib only; imports nothing of cnivpc but ``cni.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidEnvironment


def parse_cni_args(raw: str) -> dict[str, str]:
    """Split ``K=V;K=V``. A pair without '=' is an error (code 4), as in libcni."""
    out: dict[str, str] = {}
    for pair in raw.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidEnvironment(f"CNI_ARGS: invalid pair {pair!r}, expected KEY=VALUE")
        out[key] = value
    return out


@dataclass(frozen=True)
class PodRef:
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
        return f"{self.namespace}/{self.name}" if self.name else ""
