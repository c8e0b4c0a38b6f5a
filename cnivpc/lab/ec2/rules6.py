"""Strictness rules for IPv6 on ENIs and for the AWS service prefix lists.

Owns the rules of ``AssignIpv6Addresses``, ``UnassignIpv6Addresses``, ``DescribePrefixLists``,
``DescribeManagedPrefixLists`` and ``GetManagedPrefixListEntries`` (registered in
:data:`.rules.RULES` on import; the middleware imports this module), and :func:`plan_create_ipv6`,
the IPv6 half of ``CreateNetworkInterface`` that :mod:`.rules` calls.

moto's gaps closed here (harness.md §3 measured them): IPv6 addresses picked with no check against
other ENIs or the reserved addresses, caller-chosen addresses never checked, no per-ENI IPv6 limit,
``Ipv6Prefix*`` ignored (no /80 prefixes at all), a subnet without IPv6 answered with HTTP 500,
``AssignIpv6Addresses`` answering with *every* address of the ENI instead of the new ones.
Addresses live on moto's ENI (``ipv6_addresses``, which moto renders as ``ipv6AddressesSet``),
prefixes as ``ipv6_prefixes`` (rendered as ``ipv6PrefixSet``); both are committed by after-hooks,
never by the rule itself (``DryRun`` runs only the checks).

Prefix lists: moto serves AWS-managed lists for the region's S3 and DynamoDB with real-looking AWS
CIDRs, and ``DescribePrefixLists`` answers without ``cidrSet``. The lab replaces the S3 and
DynamoDB entries with its own documentation-range CIDRs (:data:`SERVICE_CIDRS`), which the fabric
routes to its gateway-endpoint host, and writes DescribePrefixLists' answer itself.

Imports the lab's own modules only (no moto, no werkzeug).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from . import errors
from .addressing6 import (
    SubnetIpv6,
    eni_ipv6_prefixes,
    eni_ipv6s,
    ipv6_slots_used,
    set_eni_ipv6_prefixes,
    set_eni_ipv6s,
)
from .limits import UNATTACHED_IPV6_PER_ENI, known_type, limits_for
from .rules import Plan, RuleContext, lookup_eni, positive_count, require, rule
from .wire import QueryForm, success_body, xml_element, xml_item_set

# The lab's AWS service CIDRs (TEST-NET-1, RFC 5737): what the region's S3 and DynamoDB prefix
# lists hold, and where the fabric's gateway endpoint answers. Public-looking, never routed on
# the real internet, and disjoint from the lab's "internet" (TEST-NET-2).
SERVICE_CIDRS: dict[str, tuple[str, ...]] = {
    "s3": ("192.0.2.0/26", "192.0.2.64/26"),
    "dynamodb": ("192.0.2.128/26",),
}


def service_prefix_list_name(region: str, service: str) -> str:
    return f"com.amazonaws.{region}.{service}"


def eni_ipv6_limit(eni: Any) -> tuple[int, str | None]:
    """Per-ENI IPv6 slots: the attached type's ``Ipv6AddressesPerInterface``, else the largest."""
    instance = eni.instance
    if instance is not None and known_type(instance.instance_type):
        return limits_for(instance.instance_type).ipv6_per_eni, instance.instance_type
    return UNATTACHED_IPV6_PER_ENI, None


def _check_type(instance_type: str | None, *, prefixes: bool) -> None:
    if instance_type is None or not known_type(instance_type):
        return
    limits = limits_for(instance_type)
    if not limits.ipv6_supported or limits.ipv6_per_eni == 0:
        raise errors.ipv6_not_supported(instance_type)
    if prefixes and not limits.nitro:
        raise errors.ipv6_prefixes_not_supported(instance_type)


def _modes(form: QueryForm, *, nested: bool) -> tuple[list[str], int | None, list[str], int | None]:
    """(addresses, count, prefixes, prefix count) asked for. CreateNetworkInterface nests the
    address (``Ipv6Addresses.N.Ipv6Address``), AssignIpv6Addresses does not (``Ipv6Addresses.N``);
    a count of 0 in a create means none."""
    if nested:
        addresses = form.indexed("Ipv6Addresses", "Ipv6Address")
        count = form.get_int("Ipv6AddressCount") or None
        prefix_count = form.get_int("Ipv6PrefixCount") or None
    else:
        addresses = form.indexed("Ipv6Addresses")
        count = positive_count(form, "Ipv6AddressCount")
        prefix_count = positive_count(form, "Ipv6PrefixCount")
    return addresses, count, form.indexed("Ipv6Prefix"), prefix_count


def _one_mode(addresses: list[str], count: int | None, prefixes: list[str],
              prefix_count: int | None) -> None:
    used = [name for name, on in (("Ipv6Addresses", bool(addresses)),
                                  ("Ipv6AddressCount", count is not None),
                                  ("Ipv6Prefixes", bool(prefixes)),
                                  ("Ipv6PrefixCount", prefix_count is not None)) if on]
    if len(used) > 1:
        raise errors.parameter_combination(
            f"The parameters '{used[0]}' and '{used[1]}' cannot be used together."
        )


# -- AssignIpv6Addresses ---------------------------------------------------------------------------
@rule("AssignIpv6Addresses")
def assign_ipv6_addresses(ctx: RuleContext) -> Plan:
    form = ctx.form
    eni = lookup_eni(ctx, require(form, "NetworkInterfaceId"))
    addresses, count, prefixes, prefix_count = _modes(form, nested=False)
    _one_mode(addresses, count, prefixes, prefix_count)
    if not (addresses or count or prefixes or prefix_count):
        raise errors.missing_parameter("Ipv6AddressCount or Ipv6Addresses")
    want_prefixes = bool(prefixes or prefix_count)
    limit, instance_type = eni_ipv6_limit(eni)
    _check_type(instance_type, prefixes=want_prefixes)
    wanted = len(addresses or prefixes) or int(count or prefix_count or 0)
    space = SubnetIpv6(ctx.backend, eni.subnet)  # no IPv6 CIDR: InvalidParameterValue
    if ipv6_slots_used(eni) + wanted > limit:
        raise errors.ipv6_limit_exceeded()
    new_addresses: list[str] = []
    new_prefixes: list[str] = []
    if addresses:
        new_addresses = space.check_explicit(addresses)
    elif count:
        new_addresses = space.allocate(count)
    elif prefixes:
        new_prefixes = space.check_explicit_prefixes(prefixes)
    else:
        new_prefixes = space.allocate_prefixes(int(prefix_count or 0))
    # moto is asked for nothing (no count, no address: a no-op there); the lab commits after its
    # 200, under the same lock, and answers with only what this call added, as AWS does.
    noop = QueryForm({k: v for k, v in form.params.items()
                      if k in ("Action", "Version", "NetworkInterfaceId")})

    def after(_body: bytes) -> bytes:
        set_eni_ipv6s(eni, eni_ipv6s(eni) + new_addresses)
        set_eni_ipv6_prefixes(eni, eni_ipv6_prefixes(eni) + new_prefixes)
        inner = xml_element("networkInterfaceId", eni.id)
        if new_addresses:
            inner += _string_list("assignedIpv6Addresses", new_addresses)
        if new_prefixes:
            inner += _string_list("assignedIpv6PrefixSet", new_prefixes)
        return success_body("AssignIpv6Addresses", ctx.request_id, inner)

    return Plan(form=noop, after=after)


def _string_list(name: str, values: list[str]) -> str:
    return f"<{name}>" + "".join(xml_element("item", v) for v in values) + f"</{name}>"


# -- UnassignIpv6Addresses -------------------------------------------------------------------------
@rule("UnassignIpv6Addresses")
def unassign_ipv6_addresses(ctx: RuleContext) -> Plan:
    form = ctx.form
    eni = lookup_eni(ctx, require(form, "NetworkInterfaceId"))
    addresses = form.indexed("Ipv6Addresses")
    prefixes = form.indexed("Ipv6Prefix")
    if not addresses and not prefixes:
        raise errors.missing_parameter("Ipv6Addresses")
    # moto drops what it finds and ignores the rest; AWS fails the whole call [inf, as IPv4].
    held = {_canonical(a) for a in eni_ipv6s(eni)}
    gone = [_canonical(a) for a in addresses]
    if any(a not in held for a in gone):
        raise errors.unassign_ipv6_not_assigned(eni.id)
    held_prefixes = set(eni_ipv6_prefixes(eni))
    if any(p not in held_prefixes for p in prefixes):
        raise errors.unassign_prefix_not_assigned(eni.id)
    noop = QueryForm({k: v for k, v in form.params.items()
                      if k in ("Action", "Version", "NetworkInterfaceId")})

    def after(_body: bytes) -> bytes:
        set_eni_ipv6s(eni, [a for a in eni_ipv6s(eni) if _canonical(a) not in gone])
        set_eni_ipv6_prefixes(eni, [p for p in eni_ipv6_prefixes(eni) if p not in prefixes])
        inner = xml_element("networkInterfaceId", eni.id)
        if addresses:
            inner += _string_list("unassignedIpv6Addresses", addresses)
        if prefixes:
            inner += _string_list("unassignedIpv6PrefixSet", prefixes)
        return success_body("UnassignIpv6Addresses", ctx.request_id, inner)

    return Plan(form=noop, after=after)


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.IPv6Address(address))
    except ValueError:
        return address


# -- CreateNetworkInterface (the IPv6 half) -----------------------------------------------------
def plan_create_ipv6(ctx: RuleContext, subnet: Any) -> tuple[list[str], list[str]]:
    """Check and pick the IPv6 addresses and /80 prefixes a CreateNetworkInterface asks for;
    returns ``(addresses, prefixes)`` (both empty when it asks for none). The caller strips the
    ``Ipv6*`` parameters from what moto sees and commits the result after moto's 200."""
    form = ctx.form
    addresses, count, prefixes, prefix_count = _modes(form, nested=True)
    if (addresses or count) and (prefixes or prefix_count):
        raise errors.parameter_combination(
            "IPv6 addresses and IPv6 prefixes cannot be used together."
        )
    if addresses and count is not None:
        raise errors.parameter_combination(
            "The parameters 'Ipv6Addresses' and 'Ipv6AddressCount' cannot be used together."
        )
    if prefixes and prefix_count is not None:
        raise errors.parameter_combination(
            "The parameters 'Ipv6Prefixes' and 'Ipv6PrefixCount' cannot be used together."
        )
    if not (addresses or count or prefixes or prefix_count):
        return [], []
    space = SubnetIpv6(ctx.backend, subnet)
    wanted = len(addresses or prefixes) or int(count or prefix_count or 0)
    if wanted > UNATTACHED_IPV6_PER_ENI:
        raise errors.ipv6_limit_exceeded()
    if addresses:
        return space.check_explicit(addresses), []
    if count:
        return space.allocate(count), []
    if prefixes:
        return [], space.check_explicit_prefixes(prefixes)
    return [], space.allocate_prefixes(int(prefix_count or 0))


def strip_ipv6(form: QueryForm) -> None:
    for key in [k for k in form.params if k.startswith(("Ipv6Address", "Ipv6Prefix"))]:
        del form.params[key]


def commit_create_ipv6(eni: Any, addresses: list[str], prefixes: list[str]) -> str:
    """Store the picked IPv6 on moto's new ENI; the XML to add to its answer."""
    set_eni_ipv6s(eni, addresses)
    set_eni_ipv6_prefixes(eni, prefixes)
    listing = ""
    if addresses:
        listing += xml_item_set(
            "ipv6AddressesSet",
            ({"ipv6Address": a, "isPrimaryIpv6": "false"} for a in addresses),
        )
    if prefixes:
        listing += xml_item_set("ipv6PrefixSet", ({"ipv6Prefix": p} for p in prefixes))
    return listing


def check_attach_ipv6(eni: Any, instance_type: str) -> None:
    """AttachNetworkInterface: the type must take the ENI's IPv6 (and its /80s, Nitro only)."""
    used = ipv6_slots_used(eni)
    if not used or not known_type(instance_type):
        return
    _check_type(instance_type, prefixes=bool(eni_ipv6_prefixes(eni)))
    if used > limits_for(instance_type).ipv6_per_eni:
        raise errors.interface_ipv6_limit_exceeded(eni.id, instance_type)


# -- AWS service prefix lists ----------------------------------------------------------------------
def install_service_prefix_lists(backend: Any) -> None:
    """Give the region's S3 and DynamoDB AWS-managed lists the lab's CIDRs (idempotent)."""
    region = str(backend.region_name)
    for service, cidrs in SERVICE_CIDRS.items():
        name = service_prefix_list_name(region, service)
        for plist in list(backend.managed_prefix_lists.values()):
            if plist.prefix_list_name == name:
                plist.entries = {plist.version: [{"Cidr": c, "Description": service}
                                                 for c in cidrs]}


def _service_lists(ctx: RuleContext) -> list[Any]:
    names = {service_prefix_list_name(str(ctx.backend.region_name), s) for s in SERVICE_CIDRS}
    return [p for p in ctx.backend.managed_prefix_lists.values() if p.prefix_list_name in names]


def _entries(plist: Any) -> list[dict[str, str]]:
    values = list(plist.entries.values())
    return list(values[-1]) if values else []


@rule("DescribePrefixLists")
def describe_prefix_lists(ctx: RuleContext) -> Plan:
    # moto answers without ``cidrSet`` (the field clients read) and lists every AWS-managed list
    # it has; the lab answers the AWS service lists (S3, DynamoDB) with their CIDRs itself.
    form = ctx.form
    install_service_prefix_lists(ctx.backend)
    wanted_ids = set(form.indexed("PrefixListId"))
    filters = dict(form.filters())
    items = []
    for plist in _service_lists(ctx):
        if wanted_ids and plist.id not in wanted_ids:
            continue
        if "prefix-list-name" in filters and plist.prefix_list_name not in filters[
            "prefix-list-name"
        ]:
            continue
        if "prefix-list-id" in filters and plist.id not in filters["prefix-list-id"]:
            continue
        cidrs = "".join(xml_element("item", e["Cidr"]) for e in _entries(plist))
        items.append(
            "<item>" + xml_element("prefixListId", plist.id)
            + xml_element("prefixListName", plist.prefix_list_name)
            + f"<cidrSet>{cidrs}</cidrSet></item>"
        )
    for wanted in wanted_ids:
        if not any(wanted in item for item in items):
            raise errors.prefix_list_not_found(wanted)
    inner = "<prefixListSet>" + "".join(items) + "</prefixListSet>"
    return Plan(reply=success_body("DescribePrefixLists", ctx.request_id, inner))


@rule("DescribeManagedPrefixLists")
def describe_managed_prefix_lists(ctx: RuleContext) -> Plan:
    # moto's own answer is right once the entries are the lab's; unknown ids: moto answers an
    # empty list, AWS InvalidPrefixListID.NotFound [inf].
    install_service_prefix_lists(ctx.backend)
    for wanted in ctx.form.indexed("PrefixListId"):
        if wanted not in ctx.backend.managed_prefix_lists:
            raise errors.prefix_list_not_found(wanted)
    return Plan()


@rule("GetManagedPrefixListEntries")
def get_managed_prefix_list_entries(ctx: RuleContext) -> Plan:
    install_service_prefix_lists(ctx.backend)
    wanted = require(ctx.form, "PrefixListId")
    if wanted not in ctx.backend.managed_prefix_lists:
        raise errors.prefix_list_not_found(wanted)  # moto: an empty list
    return Plan()
