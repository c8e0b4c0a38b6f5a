"""Narrow patches of moto's EC2 backend, each closing one measured moto gap (harness.md §3).

Owns :func:`install`. Almost all of them are *instance* attributes on the lab's own backend object
(re-installed after every reset, since moto's reset rebuilds the object's ``__dict__``), so a plain
moto in the same process is untouched. The class-level patches (subnet address allocation for
launches, the subnet's free count) only change behaviour for backends carrying the lab's marker
attribute.

Gaps closed here:

* launch address allocation ignores ENI addresses (``Subnet.get_available_subnet_ip`` walks its own
  sequential generator; an ENI created earlier may already hold that address) -> lowest free
  address from :mod:`addressing`;
* the primary ENI created by RunInstances gets ``DeleteOnTermination=false`` unless the NIC spec
  says true; AWS defaults it to true for a NIC created at launch;
* TerminateInstances leaves non-DeleteOnTermination ENIs "in-use" on the dead instance; AWS
  detaches them (status ``available``) -> detach, and emit the detach/delete events;
* DescribeNetworkInterfaces filters: ``attachment.device-index`` raises FilterNotImplementedError
  (HTTP 500); ``addresses.private-ip-address`` / ``private-ip-address`` match only the primary IP;
  ``attachment.status`` / ``attachment.delete-on-termination`` / ``attachment.network-card-index``
  are missing -> evaluated here, the rest is left to moto;
* attach/detach emit :class:`~.events.AttachmentEvent` for the fabric (moto has no hooks);
* DescribeSubnets' ``Ipv6CidrBlockState.State`` is moto's whole state dict as a string ->
  the state itself (class-level, for lab backends only);
* a subnet's ``AvailableIpAddressCount`` counts only single addresses (never the 16 addresses of
  a delegated /28 prefix, which moto does not know) -> computed by :mod:`addressing` (class-level,
  for lab backends only).

Imports moto's ``Subnet`` model (for the one class-level patch) and the lab's own modules; nothing
of werkzeug or the middleware.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from moto.ec2.models.subnets import Subnet

from .addressing import SubnetIpv4, eni_ipv4s
from .events import AttachmentEvent
from .state import LabState

MARKER = "_cnivpc_lab_state"

# Filters the lab evaluates itself (name -> value(s) of one ENI; ``None`` never matches).
_OWN_ENI_FILTERS: dict[str, Callable[[Any], list[str] | None]] = {
    "attachment.device-index": lambda e: None if e.instance is None else [str(e.device_index)],
    "attachment.status": lambda e: None if e.instance is None else ["attached"],
    "attachment.delete-on-termination": lambda e: (
        None if e.instance is None else [str(bool(e.delete_on_termination)).lower()]
    ),
    "attachment.network-card-index": lambda e: None if e.instance is None else ["0"],
    "addresses.private-ip-address": eni_ipv4s,
    "private-ip-address": eni_ipv4s,
    "addresses.primary": lambda e: ["true"],
}


def _matches(values: list[str] | None, patterns: list[str]) -> bool:
    # EC2 semantics: several values of one filter are OR-ed; '*' and '?' are wildcards.
    if not values:
        return False
    return any(fnmatch.fnmatchcase(v, p) for v in values for p in patterns)


def event_for(eni: Any, instance_id: str, reason: str) -> AttachmentEvent:
    return AttachmentEvent(
        instance_id=instance_id,
        eni_id=eni.id,
        mac=eni.mac_address,
        device_index=int(eni.device_index if eni.device_index is not None else -1),
        attachment_id=eni.attachment_id or "",
        reason=reason,
    )


def install(state: LabState) -> None:
    """(Re-)install the instance-level patches on ``state.backend``."""
    backend = state.backend
    setattr(backend, MARKER, state)
    cls = type(backend)

    orig_get_all = cls.get_all_network_interfaces

    def get_all_network_interfaces(eni_ids: Any = None, filters: Any = None) -> list[Any]:
        own: dict[str, list[str]] = {}
        rest: dict[str, Any] = {}
        for name, values in (filters or {}).items():
            if name in _OWN_ENI_FILTERS:
                own[name] = values if isinstance(values, list) else [values]
            else:
                rest[name] = values
        enis: list[Any] = orig_get_all(backend, eni_ids, rest or None)
        for name, patterns in own.items():
            enis = [e for e in enis if _matches(_OWN_ENI_FILTERS[name](e), patterns)]
        return enis

    orig_attach = cls.attach_network_interface

    def attach_network_interface(eni_id: str, instance_id: str, device_index: int) -> Any:
        attachment = orig_attach(backend, eni_id, instance_id, device_index)
        eni = backend.get_network_interface(eni_id)
        # AWS: ENIs attached through the API start with DeleteOnTermination=false (§3.5).
        eni.delete_on_termination = False
        state.queue_attach(event_for(eni, instance_id, "attach"))
        return attachment

    orig_detach = cls.detach_network_interface

    def detach_network_interface(attachment_id: str) -> None:
        eni = next((e for e in backend.enis.values() if e.attachment_id == attachment_id), None)
        event = event_for(eni, eni.instance.id, "detach") if eni and eni.instance else None
        orig_detach(backend, attachment_id)
        if event is not None:
            state.queue_detach(event)

    orig_run = cls.run_instances

    def run_instances(
        image_id: str, count: int, user_data: Any, security_group_names: Any, **kwargs: Any
    ) -> Any:
        reservation = orig_run(backend, image_id, count, user_data, security_group_names, **kwargs)
        specs = {int(n.get("DeviceIndex", 0)): n for n in kwargs.get("nics", []) or []}
        for instance in reservation.instances:
            for index, eni in instance.nics.items():
                spec = specs.get(index, {})
                if spec.get("NetworkInterfaceId"):
                    continue  # an existing ENI keeps what the caller said (default false)
                flag = spec.get("DeleteOnTermination")
                eni.delete_on_termination = True if flag is None else str(flag).lower() == "true"
        return reservation

    orig_terminate = cls.terminate_instances

    def terminate_instances(instance_ids: list[str]) -> Any:
        before: dict[str, list[tuple[Any, AttachmentEvent]]] = {}
        for instance_id in instance_ids or []:
            instance = backend.get_instance_by_id(instance_id)
            if instance is not None and instance.state != "terminated":
                before[instance_id] = [
                    (eni, event_for(eni, instance_id, "terminate"))
                    for eni in instance.nics.values()
                    if eni.instance is instance
                ]
        result = orig_terminate(backend, instance_ids)
        for nics in before.values():
            for eni, event in sorted(nics, key=lambda p: p[1].device_index, reverse=True):
                if eni.id not in backend.enis:
                    state.queue_detach(_with_reason(event, "delete-on-termination"))
                    continue
                # moto leaves it "in-use" on the terminated instance; AWS detaches it. Not via
                # ``instance.detach_eni``: that pops ``nics[index]`` and moto's DescribeInstances
                # of the terminated instance then dies on ``nics[0]``.
                eni.instance = None
                eni.attachment_id = None
                eni.attach_time = None
                eni.device_index = None
                eni.status = "available"
                state.queue_detach(event)
        return result

    backend.get_all_network_interfaces = get_all_network_interfaces
    backend.attach_network_interface = attach_network_interface
    backend.detach_network_interface = detach_network_interface
    backend.run_instances = run_instances
    backend.terminate_instances = terminate_instances


def _with_reason(event: AttachmentEvent, reason: str) -> AttachmentEvent:
    return AttachmentEvent(
        event.instance_id, event.eni_id, event.mac, event.device_index, event.attachment_id, reason
    )


_orig_get_available_subnet_ip = Subnet.get_available_subnet_ip


def _lab_get_available_subnet_ip(self: Subnet, instance: Any) -> str:
    state = getattr(self.ec2_backend, MARKER, None)
    if state is None:
        return str(_orig_get_available_subnet_ip(self, instance))
    address = SubnetIpv4(state.backend, self).allocate(1)[0]
    self._subnet_ips[address] = instance
    return address


_orig_available_count = Subnet.available_ip_address_count


def _lab_available_ip_address_count(self: Subnet) -> int:
    state = getattr(self.ec2_backend, MARKER, None)
    if state is None:
        return int(_orig_available_count.fget(self))  # type: ignore[attr-defined]
    return SubnetIpv4(state.backend, self).available_count


_LAB_AVAILABLE_COUNT = property(_lab_available_ip_address_count)


_orig_ipv6_associations = Subnet.ipv6_cidr_block_association_set


def _lab_ipv6_cidr_block_association_set(self: Subnet) -> list[dict[str, Any]]:
    if getattr(self.ec2_backend, MARKER, None) is None:
        return list(_orig_ipv6_associations.fget(self))  # type: ignore[attr-defined]
    # moto nests its whole state dict as the state: DescribeSubnets then says
    # Ipv6CidrBlockState.State == "{'State': 'associated'}"
    return [
        {"ipv6CidrBlock": a["ipv6CidrBlock"], "associationId": a["associationId"],
         "ipv6CidrBlockState": {"state": a["ipv6CidrBlockState"]["State"]}}
        for a in self.ipv6_cidr_block_associations.values()
        if a["ipv6CidrBlockState"]["State"] == "associated"
    ]


_LAB_IPV6_ASSOCIATIONS = property(_lab_ipv6_cidr_block_association_set)


def install_class_patches() -> None:
    """Idempotent; scoped to lab backends by the marker attribute."""
    if Subnet.__dict__.get("ipv6_cidr_block_association_set") is not _LAB_IPV6_ASSOCIATIONS:
        setattr(Subnet, "ipv6_cidr_block_association_set", _LAB_IPV6_ASSOCIATIONS)  # noqa: B010
    if Subnet.get_available_subnet_ip is not _lab_get_available_subnet_ip:
        Subnet.get_available_subnet_ip = _lab_get_available_subnet_ip  # type: ignore[method-assign]
    # moto declares it a property; setattr keeps mypy from reading it as a method
    if Subnet.__dict__.get("available_ip_address_count") is not _LAB_AVAILABLE_COUNT:
        setattr(Subnet, "available_ip_address_count", _LAB_AVAILABLE_COUNT)  # noqa: B010
