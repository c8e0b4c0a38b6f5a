"""Reconciliation: the store brought in line with the instance, in two steps so the host lock
is never held across a network call.

``observe`` (no lock) reads the world: the identity and the ENIs from the instance metadata,
VPC CIDRs (EC2 on families whose metadata omits secondary CIDRs), the kernel's links by MAC;
it also brings pod ENI links up with the node's MTU (idempotent netlink writes: an ENI adopted
after a reboot, or after a crash between attach and link-up, is DOWN). ``apply`` (under the
lock, store only) turns one ``Observation`` into store updates:

* the state is bound to the instance the metadata names (``Store.bind_instance``): a disk
  that moved, or was baked into an image, starts over;
* every listed ENI is recorded with its link name; one at ``interfaceIndex`` or above that the
  store did not know (adopted, not created by this store) is queued for a DeleteOnTermination
  check (``dot-pending:``, settled off the ADD path by ``Ec2Work.settle_delete_on_termination``);
* IPs on our ENIs that the store does not know are adopted, with a cooldown (we cannot tell who
  used them last; none for a whole ENI EC2 says cnivpc created for this instance: a process
  died before recording it, so no pod had them), unless we unassigned them lately (the
  metadata lists removed IPs a while);
  an ENI's primary IP never is (nor stays in the pool): it is never a pod's;
* a free IP the metadata stops listing on its ENI is a *suspect* (``ip-missing:``): never
  handed out, and forgotten once unlisted for ``METADATA_GRACE`` (unassigned behind our back, or
  by an unassign whose answer was lost). IPs our own EC2 calls just returned (``ip-fresh:``)
  are trusted through the metadata's lag, until the metadata has listed them once;
* an ENI is forgotten only when the metadata does not list it AND the kernel has no link with
  its MAC AND it was not recorded after the observation was taken: an ENI we just created, whose
  MAC the metadata does not list yet (seconds on AWS, 18-30 s tails), keeps its record, its free
  IPs and its device index.

Imports the store, the node view and, lazily, ``net.eni``.
"""

from __future__ import annotations

from ...aws.ec2 import Ec2Error
from ...aws.metadata import EniMetadata
from ...cni import logs
from ...cni.errors import CniError
from ...cni.records import Record
from .config import IpamConf
from .node import Node
from .prefixes import by_address as prefix_by_address
from .store import EniRecord, Store

log = logs.get("ipam")

# How long an unassigned IP is kept out of reconciliation: the metadata keeps listing removed
# IPs for tens of seconds.
UNASSIGN_TOMBSTONE = 300.0
# How long the metadata may lag behind EC2 on an ENI's IP list (tails of 18-30 s are seen on
# AWS): a free IP unlisted this long is gone.
METADATA_GRACE = 60.0
# How long a DeleteOnTermination still to be ensured is remembered (the ENI's life, in practice).
DOT_PENDING_TTL = 30 * 24 * 3600.0
# When the last settling of pending DeleteOnTermination marks ran (``Ec2Work``): ADDs start a
# refill for them only once it expires, so a Modify EC2 keeps refusing is not retried by every
# ADD. An ENI newly adopted drops it: its mark must not wait out a failure of another's.
DOT_TRIED = "dot-tried"


class SeenEni(Record):
    meta: EniMetadata
    vpc_cidrs: tuple[str, ...]
    link: str  # the kernel link carrying it, "" when there is none
    # A pod ENI the store did not know, that EC2 says cnivpc created for this instance: a
    # process died between creating it and recording it, so no pod ever had its IPs.
    created_by_us: bool = False


class Observation(Record):
    """What ``observe`` read, at ``taken_at`` (the store's clock)."""

    taken_at: float
    instance_id: str
    macs: frozenset[str]  # every MAC the metadata lists (lower case)
    enis: tuple[SeenEni, ...]  # the listed ENIs whose details the metadata has
    linked_macs: frozenset[str]  # MACs the kernel has a link for (lower case)


def observe(node: Node, conf: IpamConf, now: float) -> Observation:
    """Read the instance (see the module docstring). Never call it under the host lock."""
    from ...net import eni as eni_links

    instance_id = node.fresh_identity().instance_id
    macs = frozenset(m.lower() for m in node.metadata.macs())
    listed = node.interfaces(ipv6=conf.ipv6)
    by_mac = eni_links.links_by_mac()
    mtu = conf.mtu
    if not mtu:
        boot = next((e for e in listed if e.device_number == 0), None)
        boot_link = by_mac.get(boot.mac.lower()) if boot else None
        mtu = boot_link.mtu if boot_link else 0
    known = {r.eni_id for r in node.store.enis()}
    ours = _created_for(node, instance_id, [
        e.eni_id for e in listed
        if e.device_number >= max(1, conf.interface_index) and e.eni_id not in known])
    seen = []
    for eni in listed:
        link = by_mac.get(eni.mac.lower())
        try:
            cidrs = tuple(node.vpc_cidrs(eni))
        except (Ec2Error, CniError) as exc:
            # A result without the VPC's secondary CIDRs routes those via the host: better than
            # no answer at all while EC2 is unreachable.
            log.warning("cannot read the CIDRs of %s from EC2 (%s): using the metadata's",
                        eni.vpc_id, exc)
            cidrs = tuple(eni.vpc_cidrs)
        if (link is not None and eni.device_number >= max(1, conf.interface_index)
                and (not link.up or (mtu and link.mtu != mtu))):
            log.warning("ENI %s (%s) is %s: bringing it up with MTU %s", eni.eni_id, link.name,
                        "down" if not link.up else f"at MTU {link.mtu}", mtu or link.mtu)
            eni_links.bring_up(link, mtu)
        seen.append(SeenEni(eni, cidrs, link.name if link else "", eni.eni_id in ours))
    return Observation(now, instance_id, macs, tuple(seen), frozenset(by_mac))


def _created_for(node: Node, instance_id: str, eni_ids: list[str]) -> set[str]:
    """Which of these ENIs carry cnivpc's tag for this instance (one Describe; none asked when
    the list is empty, which is every reconciliation but the one after a crash or a reboot).
    When EC2 cannot tell, none: their IPs then get the adoption cooldown."""
    if not eni_ids:
        return set()
    from .ec2work import TAG_INSTANCE

    try:
        answer = node.ec2.call("DescribeNetworkInterfaces", NetworkInterfaceIds=eni_ids)
    except (Ec2Error, CniError) as exc:
        log.warning("cannot ask EC2 who created %s: %s", ", ".join(eni_ids), exc)
        return set()
    return {e["NetworkInterfaceId"] for e in answer.get("NetworkInterfaces", [])
            if any(t.get("Key") == TAG_INSTANCE and t.get("Value") == instance_id
                   for t in e.get("TagSet", []))}


def apply(store: Store, conf: IpamConf, obs: Observation, now: float) -> None:
    """Bring the store in line with ``obs`` (see the module docstring). Under the host lock
    and a store transaction; no network."""
    store.bind_instance(obs.instance_id)
    recent = store.recently_unassigned(now - UNASSIGN_TOMBSTONE)
    known = store.known_ips()
    already = {r.eni_id for r in store.enis()}
    fresh = store.cache_items("ip-fresh:")
    missing = store.cache_items("ip-missing:")
    free_by_eni: dict[str, list[str]] = {}
    for f in store.free_ips():
        free_by_eni.setdefault(f.eni_id, []).append(f.ip)
    for seen in obs.enis:
        eni = seen.meta
        store.put_eni(EniRecord(
            eni_id=eni.eni_id, mac=eni.mac, device_index=eni.device_number,
            subnet_id=eni.subnet_id, subnet_cidr=eni.subnet_cidr, vpc_id=eni.vpc_id,
            vpc_cidrs=seen.vpc_cidrs, link=seen.link, primary_ip=eni.primary_ip,
            subnet_ipv6_cidr=eni.subnet_ipv6_cidr, ipv6_prefixes=eni.ipv6_prefixes))
        if eni.device_number < max(1, conf.interface_index) or not seen.link:
            continue
        if eni.eni_id not in already:
            store.cache_put(f"dot-pending:{eni.eni_id}", "", DOT_PENDING_TTL)
            store.cache_drop(DOT_TRIED)
        # A prefix's addresses are not in local-ipv4s: its ipv4-prefix line stands for them.
        in_prefix = prefix_by_address(eni.ipv4_prefixes)
        listed = set(eni.ipv4s) | set(in_prefix)
        if eni.primary_ip in free_by_eni.get(eni.eni_id, []):
            # A pool from before primaries were excluded: the primary is never a pod's.
            log.info("the primary IP %s of %s leaves the pool", eni.primary_ip, eni.eni_id)
            store.forget([eni.primary_ip])
            free_by_eni[eni.eni_id].remove(eni.primary_ip)
        unknown = [ip for ip in (*eni.ipv4s, *in_prefix)
                   if ip not in known and ip not in recent and ip != eni.primary_ip]
        if unknown:
            # The cooldown: we cannot tell who used them last. Not for an ENI our own dead
            # process created (it never got as far as giving one to a pod).
            log.info("adopting %d IPs found on %s%s: %s", len(unknown), eni.eni_id,
                     " (created by cnivpc, never used)" if seen.created_by_us else "",
                     ", ".join(unknown))
            for prefix in sorted({in_prefix.get(ip, "") for ip in unknown}):
                store.add_free([ip for ip in unknown if in_prefix.get(ip, "") == prefix],
                               eni.eni_id, freed_at=0.0 if seen.created_by_us else now,
                               prefix=prefix)
        for ip in free_by_eni.get(eni.eni_id, []):
            if ip in listed and ip in fresh:
                # The metadata has caught up with our own call: from now on, its listing is
                # the one to believe (an IP it drops later was unassigned).
                store.cache_drop(f"ip-fresh:{ip}")
            if ip in listed or ip in fresh:
                if ip in missing:
                    store.cache_drop(f"ip-missing:{ip}")
            elif ip not in missing:
                log.warning("free IP %s is no longer listed on %s: not handed out unless the "
                            "metadata lists it again", ip, eni.eni_id)
                store.cache_put(f"ip-missing:{ip}", now, 2 * METADATA_GRACE)
            elif now - float(missing[ip]) >= METADATA_GRACE:
                log.warning("free IP %s has not been listed on %s for %.0fs: forgetting it",
                            ip, eni.eni_id, now - float(missing[ip]))
                store.forget([ip])
                store.cache_drop(f"ip-missing:{ip}")
    recorded_since = store.enis_updated_since(obs.taken_at)
    for record in store.enis():
        mac = record.mac.lower()
        if mac in obs.macs or record.eni_id in recorded_since:
            continue
        if mac in obs.linked_macs:
            log.info("ENI %s (%s) is not in the metadata yet but its link is there: kept",
                     record.eni_id, record.mac)
            continue
        log.warning("ENI %s (%s) is gone from the instance; forgetting it", record.eni_id,
                    record.mac)
        store.drop_eni(record.eni_id)
    if conf.reconcile_interval > 0:
        store.cache_put("reconciled-at", now, conf.reconcile_interval)
