"""Strictness rules: per EC2 action, what AWS refuses that moto lets through.

Owns :data:`RULES` (action -> rule), :class:`Plan` and :class:`RuleContext`. A rule runs under the
lab's state lock *before* moto sees the call. It reads moto's live state, raises
:class:`~.errors.Ec2Error` for anything AWS would refuse, may rewrite the form (e.g. turn
"SecondaryPrivateIpAddressCount=3" into three explicit free addresses, so moto's random picker is
never used) and may register an after-hook that runs once moto succeeded (to commit what moto
ignores, or to rewrite moto's answer). Rules must not mutate state themselves: under ``DryRun``
only the checks run.

Each rule cites the moto gap it closes and the AWS behaviour it copies. IPv4 prefix delegation
(``Ipv4Prefix*``), which moto accepts and silently ignores, is modelled here: /28 prefixes take
one IPv4 slot each, only on Nitro-based types, out of aligned wholly free blocks of the subnet
(``addressing``); they live on moto's ENI object as ``ipv4_prefixes``. IPv6 (addresses, /80
prefixes) and the AWS service prefix lists are in :mod:`.rules6`.

Imports the lab's own modules only; moto is reached through ``ctx.backend`` (duck-typed), never
imported, and no werkzeug/WSGI here (that is the middleware's job).
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors, pagination
from .addressing import SubnetIpv4, eni_ipv4s, eni_prefixes, ipv4_slots_used, set_eni_prefixes
from .limits import UNATTACHED_IPV4_PER_ENI, known_type, limits_for
from .state import LabState
from .wire import QueryForm, success_body, xml_element, xml_item_set

AfterHook = Callable[[bytes], bytes | None]


@dataclass
class Plan:
    """What the middleware does after a rule passed."""

    form: QueryForm | None = None  # forward this (rewritten) form instead of the original
    after: AfterHook | None = None  # runs on moto's 200 body; may return a replacement body
    reply: bytes | None = None  # answer this body without asking moto


@dataclass
class RuleContext:
    state: LabState
    form: QueryForm
    request_id: str
    dry_run: bool
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> Any:
        return self.state.backend


Rule = Callable[[RuleContext], Plan]
RULES: dict[str, Rule] = {}


def rule(action: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[action] = fn
        return fn

    return register


# -- lookups ---------------------------------------------------------------------------------------
_ENI_ID = re.compile(r"^eni-[0-9a-f]{8}([0-9a-f]{9})?$")
_ATTACH_ID = re.compile(r"^eni-attach-[0-9a-f]{8}([0-9a-f]{9})?$")


def require(form: QueryForm, name: str) -> str:
    value = form.get(name)
    if value is None or value == "":
        raise errors.missing_parameter(name)
    return value


def lookup_eni(ctx: RuleContext, eni_id: str) -> Any:
    # AWS answers Malformed (lower-case "d") before NotFound (capital "ID"); moto has neither
    # distinction nor AWS's message text.
    if not _ENI_ID.match(eni_id):
        raise errors.eni_id_malformed(eni_id)
    eni = ctx.backend.enis.get(eni_id)
    if eni is None:
        raise errors.eni_not_found(eni_id)
    return eni


def lookup_instance(ctx: RuleContext, instance_id: str) -> Any:
    instance = ctx.backend.get_instance_by_id(instance_id)
    if instance is None or instance.state == "terminated":
        raise errors.instance_not_found(instance_id)
    return instance


def eni_ipv4_limit(eni: Any) -> tuple[int, str | None]:
    """Per-ENI IPv4 slot limit: the attached instance's type, else the largest any type allows."""
    instance = eni.instance
    if instance is not None and known_type(instance.instance_type):
        return limits_for(instance.instance_type).ipv4_per_eni, instance.instance_type
    return UNATTACHED_IPV4_PER_ENI, None


def attached_nics(instance: Any) -> list[Any]:
    return [eni for eni in instance.nics.values() if eni.instance is instance]


def check_prefix_support(eni_or_instance_type: Any) -> None:
    """Prefixes only on Nitro-based types; an unattached ENI is not tied to a type yet."""
    instance_type = eni_or_instance_type
    if not isinstance(instance_type, str):
        instance = eni_or_instance_type.instance
        if instance is None:
            return
        instance_type = instance.instance_type
    if known_type(instance_type) and not limits_for(instance_type).nitro:
        raise errors.prefixes_not_supported(instance_type)


def positive_count(form: QueryForm, name: str) -> int | None:
    count = form.get_int(name)
    if count is not None and count < 1:
        raise errors.invalid_parameter_value(
            f"Value ({count}) for parameter {name} is invalid. Expecting a value greater than 0."
        )
    return count


_ID_KEYS = re.compile(r"^(NetworkInterfaceId|ResourceId)(\.\d+)?$")


def check_visibility(state: LabState, form: QueryForm) -> None:
    """EC2 eventual consistency: a just-created ENI is unknown to calls naming it for a while."""
    if not state.invisible:
        return
    for key, value in form.params.items():
        if value in state.invisible and _ID_KEYS.match(key):
            raise errors.eni_not_found(value)


# -- AssignPrivateIpAddresses ----------------------------------------------------------------------
@rule("AssignPrivateIpAddresses")
def assign_private_ip_addresses(ctx: RuleContext) -> Plan:
    form = ctx.form
    eni = lookup_eni(ctx, require(form, "NetworkInterfaceId"))
    explicit = form.indexed("PrivateIpAddress")
    count = form.get_int("SecondaryPrivateIpAddressCount")
    prefixes = form.indexed("Ipv4Prefix")
    prefix_count = form.get_int("Ipv4PrefixCount")
    # Exactly one mode per call (moto would take the IPs and silently drop the prefixes).
    modes = {
        "PrivateIpAddresses": bool(explicit),
        "SecondaryPrivateIpAddressCount": count is not None,
        "Ipv4Prefixes": bool(prefixes),
        "Ipv4PrefixCount": prefix_count is not None,
    }
    chosen = [name for name, used in modes.items() if used]
    if len(chosen) > 1:
        raise errors.parameter_combination(
            f"The parameters '{chosen[0]}' and '{chosen[1]}' cannot be used together."
        )
    if not chosen:
        raise errors.missing_parameter("SecondaryPrivateIpAddressCount or PrivateIpAddress")
    if prefixes or prefix_count is not None:
        return _assign_prefixes(ctx, eni, prefixes, positive_count(form, "Ipv4PrefixCount"))
    count = positive_count(form, "SecondaryPrivateIpAddressCount")
    wanted = len(explicit) if explicit else int(count or 0)
    # moto: no per-ENI limit at all (27 IPs on a c5.xlarge ENI). AWS counts existing + new slots
    # (addresses and prefixes) against the attached type's Ipv4AddressesPerInterface, and
    # assigns nothing on failure.
    limit, _type = eni_ipv4_limit(eni)
    if ipv4_slots_used(eni) + wanted > limit:
        raise errors.private_ip_limit_exceeded()
    space = SubnetIpv4(ctx.backend, eni.subnet)
    moved: list[str] = []
    if explicit:
        # moto: no duplicate check (the same IP on two ENIs). AWS: InvalidIPAddress.InUse unless
        # AllowReassignment, which moves the address from its current ENI.
        moved = space.check_explicit(
            explicit, eni_id=eni.id, allow_reassignment=form.get_bool("AllowReassignment")
        )
        new = list(explicit)
    else:
        # moto: random picks with no exhaustion check (AvailableIpAddressCount went to -10).
        new = space.allocate(wanted)
    rewritten = QueryForm(dict(form.params))
    rewritten.params.pop("SecondaryPrivateIpAddressCount", None)
    rewritten.params.pop("AllowReassignment", None)
    rewritten.set_indexed("PrivateIpAddress", new)

    def after(_body: bytes) -> bytes:
        for address in moved:
            for other in list(ctx.backend.enis.values()):
                if other.id != eni.id and address in eni_ipv4s(other):
                    other.private_ip_addresses = [
                        item
                        for item in other.private_ip_addresses
                        if item.get("PrivateIpAddress") != address
                    ]
        # moto answers with *every* address of the ENI (primary included); AWS lists only the
        # ones this call added, and clients feed that list straight into their pools.
        inner = (
            xml_element("networkInterfaceId", eni.id)
            + xml_item_set("assignedPrivateIpAddressesSet", ({"privateIpAddress": a} for a in new))
            + xml_element("return", "true")
        )
        return success_body("AssignPrivateIpAddresses", ctx.request_id, inner)

    return Plan(form=rewritten, after=after)


def _assign_prefixes(
    ctx: RuleContext, eni: Any, explicit: list[str], count: int | None
) -> Plan:
    # moto: Ipv4Prefix*/Ipv4PrefixCount accepted, nothing assigned, nothing said. AWS: one slot
    # per /28 (the same Ipv4AddressesPerInterface budget as addresses), Nitro types only, an
    # aligned wholly free block (InsufficientCidrBlocks when the subnet is fragmented).
    check_prefix_support(eni)
    wanted = len(explicit) if explicit else int(count or 0)
    limit, _type = eni_ipv4_limit(eni)
    if ipv4_slots_used(eni) + wanted > limit:
        raise errors.private_ip_limit_exceeded()
    space = SubnetIpv4(ctx.backend, eni.subnet)
    if explicit:
        space.check_explicit_prefixes(explicit, eni_id=eni.id)
        new = list(explicit)
    else:
        new = space.allocate_prefixes(wanted)
    # moto is asked for nothing (an Assign without addresses is a no-op there); the prefixes are
    # committed after its 200, under the same lock.
    rewritten = QueryForm(
        {k: v for k, v in ctx.form.params.items() if not k.startswith("Ipv4Prefix")}
    )

    def after(_body: bytes) -> bytes:
        set_eni_prefixes(eni, eni_prefixes(eni) + new)
        inner = (
            xml_element("networkInterfaceId", eni.id)
            + xml_item_set("assignedIpv4PrefixSet", ({"ipv4Prefix": p} for p in new))
            + xml_element("return", "true")
        )
        return success_body("AssignPrivateIpAddresses", ctx.request_id, inner)

    return Plan(form=rewritten, after=after)


# -- UnassignPrivateIpAddresses --------------------------------------------------------------------
@rule("UnassignPrivateIpAddresses")
def unassign_private_ip_addresses(ctx: RuleContext) -> Plan:
    form = ctx.form
    eni = lookup_eni(ctx, require(form, "NetworkInterfaceId"))
    addresses = form.indexed("PrivateIpAddress")
    prefixes = form.indexed("Ipv4Prefix")
    if not addresses and not prefixes:
        raise errors.missing_parameter("PrivateIpAddress")
    on_eni = eni_ipv4s(eni)
    # moto silently ignores unknown addresses and would even drop the primary. AWS fails the
    # whole call in both cases.
    if eni.private_ip_address in addresses:
        raise errors.unassign_primary()
    if any(a not in on_eni for a in addresses):
        raise errors.unassign_not_assigned(eni.id)
    held = eni_prefixes(eni)
    if any(p not in held for p in prefixes):
        raise errors.unassign_prefix_not_assigned(eni.id)
    if not prefixes:
        return Plan()
    rewritten = QueryForm({k: v for k, v in form.params.items() if not k.startswith("Ipv4Prefix")})

    def after(_body: bytes) -> None:
        set_eni_prefixes(eni, [p for p in eni_prefixes(eni) if p not in prefixes])
        return None

    return Plan(form=rewritten, after=after)


# -- CreateNetworkInterface ------------------------------------------------------------------------
@rule("CreateNetworkInterface")
def create_network_interface(ctx: RuleContext) -> Plan:
    # moto ignores ClientToken. AWS: a retry with the same token and parameters answers the first
    # call's ENI and creates nothing; the same token with other parameters is refused. This is
    # what lets a client retry a create whose answer it never got without leaking an ENI.
    token = ctx.form.get("ClientToken") or ""
    request = tuple(sorted((k, v) for k, v in ctx.form.params.items()
                           if k not in ("ClientToken", "DryRun")))
    if token and token in ctx.state.client_tokens:
        first, body = ctx.state.client_tokens[token]
        if first != request:
            raise errors.idempotent_parameter_mismatch(token)
        return Plan(reply=body)
    plan = _create_network_interface(ctx)
    if token and not ctx.dry_run:
        created_after = plan.after

        def remember(body: bytes) -> bytes | None:
            final = created_after(body) if created_after else None
            ctx.state.client_tokens[token] = (request, final if final is not None else body)
            return final

        plan.after = remember
    return plan


def _create_network_interface(ctx: RuleContext) -> Plan:
    form = ctx.form
    subnet_id = require(form, "SubnetId")
    try:
        subnet = ctx.backend.get_subnet(subnet_id)
    except Exception:
        raise errors.subnet_not_found(subnet_id) from None
    primary = form.get("PrivateIpAddress")
    listed = form.indexed("PrivateIpAddresses", "PrivateIpAddress")
    listed_primary = form.indexed("PrivateIpAddresses", "Primary")
    count = form.get_int("SecondaryPrivateIpAddressCount")
    if listed and count is not None:
        raise errors.parameter_combination(
            "The parameters 'PrivateIpAddresses' and 'SecondaryPrivateIpAddressCount' "
            "cannot be used together."
        )
    explicit: list[str] = []
    if primary:
        explicit.append(primary)
    for address, is_primary in zip(listed, listed_primary + [""] * len(listed), strict=False):
        if address in explicit:
            continue
        if is_primary.lower() == "true" and not primary:
            explicit.insert(0, address)
            primary = address
        else:
            explicit.append(address)
    prefixes = form.indexed("Ipv4Prefix", "Ipv4Prefix")
    prefix_count = positive_count(form, "Ipv4PrefixCount")
    if prefixes and prefix_count is not None:
        raise errors.parameter_combination(
            "The parameters 'Ipv4Prefixes' and 'Ipv4PrefixCount' cannot be used together."
        )
    if (prefixes or prefix_count is not None) and (count is not None or len(explicit) > 1):
        # [inf] one kind of secondary slot per call, as Assign; a chosen primary IP is fine.
        raise errors.parameter_combination(
            "Secondary private IPv4 addresses and IPv4 prefixes cannot be used together."
        )
    secondaries = int(count or 0)
    n_prefixes = len(prefixes) if prefixes else int(prefix_count or 0)
    total = max(1, len(explicit)) + secondaries + n_prefixes
    # moto: no limit (40 secondaries accepted). The ENI is not tied to a type yet, so AWS applies
    # the largest per-ENI limit; the type's own limit (and Nitro, for prefixes) is enforced at
    # attach.
    if total > UNATTACHED_IPV4_PER_ENI:
        raise errors.private_ip_limit_exceeded()
    space = SubnetIpv4(ctx.backend, subnet)
    space.check_explicit(explicit, eni_id=None, allow_reassignment=False)
    auto = total - n_prefixes - len(explicit)
    if auto > space.free_count:
        raise errors.create_insufficient_addresses()
    addresses = explicit + space.allocate(auto)
    from .rules6 import commit_create_ipv6, plan_create_ipv6, strip_ipv6  # (rules6 imports us)

    new_ipv6, new_ipv6_prefixes = plan_create_ipv6(ctx, subnet)
    # The primary address first, then the /28s around it (a block holding it is not free).
    if prefixes:
        space.check_explicit_prefixes(prefixes, eni_id=None)
        new_prefixes = list(prefixes)
    else:
        new_prefixes = space.allocate_prefixes(n_prefixes) if n_prefixes else []
    rewritten = QueryForm(dict(form.params))
    rewritten.params.pop("Ipv4PrefixCount", None)
    rewritten.drop_indexed("Ipv4Prefix")
    rewritten.params.pop("SecondaryPrivateIpAddressCount", None)
    strip_ipv6(rewritten)  # moto's IPv6 picks are unchecked: the lab's are committed below
    rewritten.params["PrivateIpAddress"] = addresses[0]
    rewritten.drop_indexed("PrivateIpAddresses")
    for n, address in enumerate(addresses, start=1):
        rewritten.params[f"PrivateIpAddresses.{n}.PrivateIpAddress"] = address
        rewritten.params[f"PrivateIpAddresses.{n}.Primary"] = "true" if n == 1 else "false"
    window = ctx.state.control.profile.create_visibility_delay

    def after(body: bytes) -> bytes | None:
        eni_id = _first_text(body, "networkInterfaceId")
        if window > 0 and eni_id:
            ctx.state.invisible[eni_id] = time.monotonic() + window
        if not (new_prefixes or new_ipv6 or new_ipv6_prefixes) or not eni_id:
            return None
        # moto never heard of the prefixes (nor saw the IPv6 asked for): commit them on its ENI
        # and add them to its answer (one <networkInterface> element, no nested one).
        eni = ctx.backend.enis[eni_id]
        listing = ""
        if new_prefixes:
            set_eni_prefixes(eni, new_prefixes)
            listing = xml_item_set("ipv4PrefixSet", ({"ipv4Prefix": p} for p in new_prefixes))
        listing += commit_create_ipv6(eni, new_ipv6, new_ipv6_prefixes)
        if new_ipv6:
            # moto renders an empty ipv6AddressesSet for an ENI created without IPv6
            body = body.replace(b"<ipv6AddressesSet/>", b"", 1)
        return body.replace(b"</networkInterface>", listing.encode() + b"</networkInterface>", 1)

    return Plan(form=rewritten, after=after)


def _first_text(body: bytes, local_name: str) -> str | None:
    for element in ET.fromstring(body).iter():
        if element.tag.rsplit("}", 1)[-1] == local_name and element.text:
            return element.text
    return None


# -- DeleteNetworkInterface ------------------------------------------------------------------------
@rule("DeleteNetworkInterface")
def delete_network_interface(ctx: RuleContext) -> Plan:
    eni = lookup_eni(ctx, require(ctx.form, "NetworkInterfaceId"))
    # moto deletes attached ENIs (and leaves them listed on the instance). AWS also refuses while
    # a detach is still in progress (``detaching``).
    if eni.instance is not None or eni.id in ctx.state.detaching:
        raise errors.eni_currently_in_use(eni.id)
    return Plan()


# -- AttachNetworkInterface ------------------------------------------------------------------------
@rule("AttachNetworkInterface")
def attach_network_interface(ctx: RuleContext) -> Plan:
    form = ctx.form
    eni = lookup_eni(ctx, require(form, "NetworkInterfaceId"))
    instance = lookup_instance(ctx, require(form, "InstanceId"))
    device_index = form.get_int("DeviceIndex")
    if device_index is None:
        raise errors.missing_parameter("DeviceIndex")
    card = form.get_int("NetworkCardIndex") or 0
    if eni.instance is not None or eni.id in ctx.state.detaching:
        raise errors.interface_in_use_attach(eni.id)
    # moto attaches across AZs; an ENI lives in its subnet's AZ, so AWS cannot.
    if eni.subnet.availability_zone != instance.placement.zone:
        raise errors.availability_zone_mismatch()
    limits = limits_for(instance.instance_type) if known_type(instance.instance_type) else None
    if limits is not None and not 0 <= card < limits.network_cards:
        raise errors.invalid_network_card(card, instance.instance_type)
    nics = attached_nics(instance)
    # moto: a duplicate index silently replaces the earlier ENI in ``instance.nics`` (corrupting
    # later detaches). AWS refuses with InvalidParameterValue (not an ...InUse code).
    # SEAM: multi-card types key device indexes per card; moto keeps one map, so does the lab.
    if any(n.device_index == device_index for n in nics):
        raise errors.device_index_in_use(instance.id, device_index)
    if eni_prefixes(eni):
        check_prefix_support(instance.instance_type)
    from .rules6 import check_attach_ipv6

    check_attach_ipv6(eni, instance.instance_type)
    if limits is not None:
        # moto: no limit (7 ENIs on a c5.xlarge). The count in AWS's message includes the new ENI.
        if len(nics) + 1 > limits.max_enis:
            raise errors.attachment_limit_exceeded(len(nics) + 1, instance.instance_type)
        if ipv4_slots_used(eni) > limits.ipv4_per_eni:
            raise errors.interface_ip_limit_exceeded(eni.id, instance.instance_type)
    return Plan()


# -- DetachNetworkInterface ------------------------------------------------------------------------
@rule("DetachNetworkInterface")
def detach_network_interface(ctx: RuleContext) -> Plan:
    attachment_id = require(ctx.form, "AttachmentId")
    if not _ATTACH_ID.match(attachment_id):
        raise errors.attachment_id_malformed(attachment_id)
    eni = next((e for e in ctx.backend.enis.values() if e.attachment_id == attachment_id), None)
    if eni is None or eni.instance is None:
        raise errors.attachment_not_found(attachment_id)
    # moto only refuses when the instance has a single NIC left (LastEniDetachError, any index).
    if eni.device_index == 0:
        raise errors.detach_primary()
    duration = ctx.state.control.profile.detach_duration

    def after(_body: bytes) -> None:
        # moto flips straight to "available"; AWS passes through "detaching" for seconds.
        if duration > 0:
            eni.status = "detaching"
            ctx.state.detaching[eni.id] = time.monotonic() + duration
        return None

    return Plan(after=after)


# -- ModifyNetworkInterfaceAttribute ---------------------------------------------------------------
@rule("ModifyNetworkInterfaceAttribute")
def modify_network_interface_attribute(ctx: RuleContext) -> Plan:
    form = ctx.form
    eni = lookup_eni(ctx, require(form, "NetworkInterfaceId"))
    flag = form.get("Attachment.DeleteOnTermination")
    if flag is None:
        return Plan()
    attachment_id = require(form, "Attachment.AttachmentId")
    if not _ATTACH_ID.match(attachment_id):
        raise errors.attachment_id_malformed(attachment_id)
    if eni.attachment_id != attachment_id:
        raise errors.attachment_not_found(attachment_id)
    value = flag.lower() == "true"

    def after(_body: bytes) -> None:
        # moto parses nothing of ``Attachment.*``: DeleteOnTermination stayed false.
        eni.delete_on_termination = value
        return None

    return Plan(after=after)


# -- RunInstances ----------------------------------------------------------------------------------
@rule("RunInstances")
def run_instances(ctx: RuleContext) -> Plan:
    # moto ignores prefixes in a launch's NIC specs; the lab models them on the ENI calls only,
    # so a launch asking for them is a loud gap, not a silent "nothing assigned".
    if any(k.startswith("NetworkInterface.") and ".Ipv4Prefix" in k for k in ctx.form.params):
        raise errors.lab_not_implemented("IPv4 prefixes in RunInstances' network interfaces "
                                         "(assign them with AssignPrivateIpAddresses)")
    # moto's launch-time IPv6 picks are unchecked (duplicates, reserved addresses, no limit)
    if any(k.startswith("Ipv6Address") or (k.startswith("NetworkInterface.") and ".Ipv6" in k)
           for k in ctx.form.params):
        raise errors.lab_not_implemented("IPv6 addresses or prefixes in RunInstances "
                                         "(assign them with AssignIpv6Addresses)")
    return Plan()


# -- Describe* pagination --------------------------------------------------------------------------
def _paginated(action: str, list_tag: str, id_param: str | None, bounds: tuple[int, int]) -> Rule:
    def paginate(ctx: RuleContext) -> Plan:
        form = ctx.form
        page = pagination.parse(form, id_param=id_param, bounds=bounds)
        if page is None:
            return Plan()
        rewritten = QueryForm(dict(form.params))
        rewritten.params.pop("MaxResults", None)
        rewritten.params.pop("NextToken", None)

        def after(body: bytes) -> bytes:
            return pagination.slice_response(body, list_tag, page, ctx.request_id)

        return Plan(form=rewritten, after=after)

    paginate.__name__ = f"paginate_{action}"
    return rule(action)(paginate)


# EC2's MaxResults bounds per call (service-2.json): 5..1000 for ENIs and subnets, 5..100 for
# instance types. moto ignores MaxResults and NextToken entirely.
_paginated("DescribeNetworkInterfaces", "networkInterfaceSet", "NetworkInterfaceId", (5, 1000))
_paginated("DescribeSubnets", "subnetSet", "SubnetId", (5, 1000))


@rule("DescribeInstanceTypes")
def describe_instance_types(ctx: RuleContext) -> Plan:
    # Same contract as ``_paginated`` but cut *before* moto serialises: moto renders all ~1400
    # types (seconds of XML) for every page otherwise. The page's names are chosen in-process and
    # moto is asked for just those.
    form = ctx.form
    page = pagination.parse(form, id_param=None, bounds=(5, 100))
    if page is None:
        return Plan()
    filters = {name: values for name, values in form.filters()}
    try:
        matches = ctx.backend.describe_instance_types(
            form.indexed("InstanceType") or None, filters or None
        )
    except Exception:
        return Plan()  # let moto produce its own error for the same request
    names = [str(m["InstanceType"]) for m in matches]
    chosen = names[page.offset : page.offset + page.size]
    token = pagination.next_token_after(page, len(names))
    if not chosen:
        return Plan(
            reply=success_body("DescribeInstanceTypes", ctx.request_id, "<instanceTypeSet/>")
        )
    rewritten = QueryForm(
        {k: v for k, v in form.params.items() if k.startswith(("Action", "Version", "DryRun"))}
    )
    rewritten.set_indexed("InstanceType", chosen)

    def after(body: bytes) -> bytes:
        return pagination.add_next_token(body, token, ctx.request_id)

    return Plan(form=rewritten, after=after)
