"""The IPAM's EC2 work: what happens outside the host lock once a decision is taken. A batched
Assign, a new ENI (created with its IPs and tags, attached, DeleteOnTermination, its link
waited for and brought up, or rolled back when it never appears), unassigning surplus IPs, and
the sweep for leaked ENIs (ours, detached, seen twice ``LEAK_CONFIRM_AFTER`` apart).

``Ec2Work`` is a collaborator of the allocator, which holds one (``Allocator.ec2work``): the
decisions live in ``allocator``, the calls here; every store update is made through the
``decide`` it is given (the allocator's lock + transaction), never across a call.
Imports the store, the node view (aws/) and, lazily, ``net.eni``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ...aws.ec2 import Ec2Error
from ...cni import logs
from ...cni.errors import CniError, TryAgainLater
from ...cni.records import replace
from .config import IpamConf
from .decision import Plan, Unavailable
from .node import Node, Subnet
from .prefixes import PREFIX_SIZE
from .prefixes import addresses as prefix_addresses
from .reconcile import DOT_PENDING_TTL, DOT_TRIED
from .store import EniRecord, FreeIP, Store

log = logs.get("ipam")

# Tags on ENIs we create: GC finds leaked ones by them, and the IAM policy scopes by them.
TAG_INSTANCE = "cnivpc.io/instance-id"
TAG_CLUSTER = "cnivpc.io/cluster"
TAG_CREATED = "cnivpc.io/created-at"
# A detached ENI with our tags is deleted by GC only when seen detached twice this far apart:
# an ENI between CreateNetworkInterface and AttachNetworkInterface is briefly "available" too.
LEAK_CONFIRM_AFTER = 300.0
# A DeleteOnTermination still pending is retried by the refill an ADD asks for at most this
# often (an IAM policy refusing Modify must not turn every ADD into EC2 calls).
DOT_RETRY_AFTER = 60.0
# How long an IP EC2 just gave us is trusted while the metadata does not list it yet.
FRESH_IP_TTL = 120.0

# Prefix delegation's fallbacks (see ``_falls_back``): the last one, for ``cnivpc status``, and
# an instance type's refusal of prefixes (not Nitro), remembered so every ADD does not ask again.
PREFIX_FALLBACK = "prefix-fallback"
PREFIX_FALLBACK_TTL = 24 * 3600.0
PREFIXES_REFUSED = "prefixes-refused"
PREFIXES_REFUSED_TTL = 3600.0
# What EC2 answers a prefix request on an instance type that takes none; the message names
# prefixes (the codes are also used for other refusals).
PREFIX_UNSUPPORTED_CODES = frozenset({"InvalidParameterValue", "UnsupportedOperation",
                                      "InvalidParameterCombination"})


class Unassigned:
    """What an unassign did to each IP: ``done`` (EC2 no longer has it), ``kept`` (EC2 still
    has it: back in the pool), ``unknown`` (EC2 could not be asked: out of the pool until
    reconciliation finds it still there); ``errors`` says why anything was not done."""

    __slots__ = ("done", "errors", "kept", "unknown")

    def __init__(self) -> None:
        self.done: list[str] = []
        self.kept: list[str] = []
        self.unknown: list[str] = []
        self.errors: list[str] = []

    def __repr__(self) -> str:
        return (f"Unassigned(done={self.done!r}, kept={self.kept!r}, unknown={self.unknown!r}, "
                f"errors={self.errors!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Unassigned):
            return NotImplemented
        return (self.done, self.kept, self.unknown, self.errors) == (
            other.done, other.kept, other.unknown, other.errors)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass's


class Ec2Work:
    """EC2 calls on behalf of the allocator (see the module docstring)."""

    def __init__(self, conf: IpamConf, store: Store, node: Node, *,
                 decide: Callable[[], AbstractContextManager[None]],
                 clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.conf = conf
        self.store = store
        self.node = node
        self.decide = decide
        self._clock = clock
        self._sleep = sleep

    def _boot_eni(self) -> EniRecord:
        # Every path to EC2 work observed the instance first when the store knew no ENI.
        enis = self.store.enis()
        if not enis:
            raise TryAgainLater("the instance metadata lists no ENI yet")
        return enis[0]

    def assign(self, plan: Plan) -> None:
        if plan.prefixes and self.prefixes_usable():
            try:
                answer = self.node.ec2.call("AssignPrivateIpAddresses",
                                            NetworkInterfaceId=plan.eni_id,
                                            Ipv4PrefixCount=plan.count)
            except Ec2Error as exc:
                if not self._falls_back(exc, f"on {plan.eni_id}"):
                    self._assign_failed(plan, exc)
                    return
            else:
                got = [p["Ipv4Prefix"] for p in answer.get("AssignedIpv4Prefixes", [])]
                log.info("assigned %d prefixes to %s: %s", len(got), plan.eni_id,
                         ", ".join(got))
                with self.decide():
                    self._add_prefixes(got, plan.eni_id)
                return
        # Secondary IPs (as many as the prefixes' slots, after a fallback).
        try:
            answer = self.node.ec2.call("AssignPrivateIpAddresses",
                                        NetworkInterfaceId=plan.eni_id,
                                        SecondaryPrivateIpAddressCount=plan.count)
        except Ec2Error as exc:
            self._assign_failed(plan, exc)
            return
        new = [a["PrivateIpAddress"] for a in answer.get("AssignedPrivateIpAddresses", [])]
        log.info("assigned %d IPs to %s: %s", len(new), plan.eni_id, ", ".join(new))
        with self.decide():
            self.store.add_free(new, plan.eni_id)
            self._mark_fresh(new)

    def assign_addresses(self, plan: Plan) -> None:
        """An Assign of the very addresses a runtime asked for (``plan.ips``). Nothing is
        written here: the allocator records them as the asking pod's in one decision, so no
        other ADD can take them from the pool in between (one whose answer is lost is adopted
        by the next reconciliation, cooling)."""
        try:
            self.node.ec2.call("AssignPrivateIpAddresses", NetworkInterfaceId=plan.eni_id,
                               PrivateIpAddresses=list(plan.ips))
        except Ec2Error as exc:
            wanted = ", ".join(plan.ips)
            if exc.aws_code == "InvalidIPAddress.InUse":
                raise Unavailable(f"the requested IP {wanted} is in use in the VPC",
                                  exc.message) from exc
            if exc.aws_code == "PrivateIpAddressLimitExceeded":
                raise Unavailable(f"{plan.eni_id} has no free slot for the requested IP "
                                  f"{wanted}", exc.message) from exc
            raise exc.as_cni() from exc
        log.info("assigned the requested %s to %s", ", ".join(plan.ips), plan.eni_id)

    def _assign_failed(self, plan: Plan, exc: Ec2Error) -> None:
        if exc.aws_code == "PrivateIpAddressLimitExceeded":
            # Our count was stale (IPs added outside cnivpc): learn the truth and go on.
            self._refresh_eni_ips(plan.eni_id)
            return
        if exc.aws_code == "InsufficientFreeAddressesInSubnet":
            raise TryAgainLater(f"the subnet of {plan.eni_id} has no free address",
                                exc.message) from exc
        raise exc.as_cni() from exc

    def require_ipv6_prefixes(self) -> None:
        """Refuse ``ipv6`` before any EC2 work on an instance type that takes no IPv6 prefix
        (not Nitro-based): EC2 would create the ENI, then refuse to attach it (or refuse the
        Assign), after the work. Unknown (a built-in table, a guess): EC2 will say."""
        limits = self.node.limits()
        if limits.nitro is False:
            itype = self.node.identity.instance_type
            raise CniError(f"ipv6 needs a Nitro-based instance type: {itype} takes no IPv6 "
                           "prefixes", "cnivpc gives pods IPv6 out of /80 prefixes, as the AWS "
                           "VPC CNI does; use a Nitro type or turn ipv6 off", code=7)

    def assign_ipv6_prefix(self, eni: EniRecord) -> tuple[str, ...]:
        """Dual-stack: a /80 for an ENI that has none (adopted, or from before ``ipv6``); the
        ENI's IPv6 prefixes after it, recorded. A lost answer followed by a retry leaves a
        second /80: harmless, and reconciliation records it too."""
        self.require_ipv6_prefixes()
        try:
            answer = self.node.ec2.call("AssignIpv6Addresses", NetworkInterfaceId=eni.eni_id,
                                        Ipv6PrefixCount=1)
        except Ec2Error as exc:
            raise exc.as_cni() from exc
        got = tuple(str(p) for p in answer.get("AssignedIpv6Prefixes", []))
        log.info("assigned the IPv6 prefix %s to %s", ", ".join(got), eni.eni_id)
        with self.decide():
            record = self.store.eni(eni.eni_id) or eni
            merged = tuple(dict.fromkeys((*record.ipv6_prefixes, *got)))
            self.store.put_eni(replace(record, ipv6_prefixes=merged))
        return merged

    # -- prefix delegation -------------------------------------------------------------------

    def prefixes_usable(self) -> bool:
        """Whether to ask EC2 for prefixes now: not while a recent refusal for the instance
        type (not Nitro) stands."""
        return self.store.cache_get(PREFIXES_REFUSED) is None

    def _falls_back(self, exc: Ec2Error, where: str) -> bool:
        """Whether a prefix request's failure means "use secondary IPs instead": no aligned
        free /28 in the subnet (``InsufficientCidrBlocks``: fragmentation), or an instance type
        that takes no prefixes. Recorded for ``cnivpc status`` and logged; other errors are
        the caller's."""
        if exc.aws_code == "InsufficientCidrBlocks":
            why = f"no free /28 in the subnet {where} (fragmented): {exc.message}"
        elif exc.aws_code in PREFIX_UNSUPPORTED_CODES and "refix" in exc.message:
            why = f"EC2 refused prefixes {where}: {exc.message}"
            with self.decide():
                self.store.cache_put(PREFIXES_REFUSED, why, PREFIXES_REFUSED_TTL)
        else:
            return False
        log.warning("prefix delegation: %s; falling back to secondary IPs", why)
        with self.decide():
            self.store.cache_put(PREFIX_FALLBACK, {"at": self._clock(), "why": why},
                                 PREFIX_FALLBACK_TTL)
        return True

    def _add_prefixes(self, prefixes: list[str], eni_id: str) -> None:
        """Under ``decide()``: the prefixes' addresses join the pool, fresh from EC2."""
        for prefix in prefixes:
            ips = prefix_addresses(prefix)
            self.store.add_free(ips, eni_id, prefix=prefix)
            self._mark_fresh(ips)

    def _mark_fresh(self, ips: list[str]) -> None:
        """EC2 just told us these IPs are on our ENI: reconciliation trusts that over a
        metadata listing that lags behind (``METADATA_GRACE``)."""
        for ip in ips:
            self.store.cache_put(f"ip-fresh:{ip}", 1, FRESH_IP_TTL)

    def _refresh_eni_ips(self, eni_id: str) -> None:
        ips = self.node.eni_ips(eni_id)
        with self.decide():
            # Unknown IPs on our ENI were put there by someone else: give them a cooldown.
            for prefix in set(ips.values()):
                self.store.add_free([ip for ip, p in ips.items() if p == prefix], eni_id,
                                    freed_at=self._clock(), prefix=prefix)

    def create(self, plan: Plan) -> None:
        from ...net import eni as eni_links

        assert plan.subnet is not None and plan.device_index is not None
        if self.conf.ipv6:
            self.require_ipv6_prefixes()
        identity = self.node.identity
        boot = self._boot_eni()
        groups = self.conf.sec_group_ids
        if groups is None:
            groups = list(self.node.metadata.interface(boot.mac).security_group_ids)
        tags = [{"Key": TAG_INSTANCE, "Value": identity.instance_id},
                {"Key": TAG_CREATED, "Value": str(int(self._clock()))}]
        if self.conf.cluster_name:
            tags.append({"Key": TAG_CLUSTER, "Value": self.conf.cluster_name})
        params: dict[str, object] = {
            "Groups": groups, "Description": f"cnivpc pod ENI of {identity.instance_id}",
            "TagSpecifications": [{"ResourceType": "network-interface", "Tags": tags}],
        }
        created, subnet = self._create_in_a_subnet(plan, params, boot.vpc_id)
        ipv6_prefixes = tuple(p["Ipv6Prefix"] for p in created.get("Ipv6Prefixes", []))
        eni_id, mac = created["NetworkInterfaceId"], created["MacAddress"]
        addresses = created.get("PrivateIpAddresses", [])
        primary = created.get("PrivateIpAddress") or next(
            (a["PrivateIpAddress"] for a in addresses if a.get("Primary")), "")
        ips = [a["PrivateIpAddress"] for a in addresses if a["PrivateIpAddress"] != primary]
        prefixes = [p["Ipv4Prefix"] for p in created.get("Ipv4Prefixes", [])]
        attachment = self._attach(eni_id, identity.instance_id, plan.device_index)
        self.ensure_delete_on_termination(eni_id, attachment)
        try:
            link = eni_links.wait_for_link(mac, self.node.deadline)
            eni_links.bring_up(link, self.conf.mtu or eni_links.mtu_of(boot.link))
        except CniError as exc:
            log.error("ENI %s (%s) attached but no link appeared: rolling it back", eni_id, mac)
            self.detach_and_delete(eni_id, attachment)
            raise TryAgainLater(f"ENI {eni_id} did not appear in the kernel in time",
                                str(exc)) from exc
        record = EniRecord(eni_id=eni_id, mac=mac, device_index=plan.device_index,
                           subnet_id=subnet.subnet_id, subnet_cidr=subnet.cidr,
                           vpc_id=boot.vpc_id, vpc_cidrs=boot.vpc_cidrs, link=link.name,
                           primary_ip=primary, subnet_ipv6_cidr=subnet.ipv6_cidr,
                           ipv6_prefixes=ipv6_prefixes)
        log.info("created %s (%s, %s) at device %d in %s with %d IPs%s", eni_id, mac, link.name,
                 plan.device_index, subnet.subnet_id, len(ips),
                 f" and {len(prefixes)} prefixes" if prefixes else "")
        with self.decide():
            self.store.put_eni(record)
            self.store.add_free(ips, eni_id)
            self._mark_fresh(ips)
            self._add_prefixes(prefixes, eni_id)
        self.node.forget_subnets(boot.vpc_id)  # its free count just dropped

    def _create_in_a_subnet(self, plan: Plan, params: dict[str, object],
                            vpc_id: str) -> tuple[dict[str, Any], Subnet]:
        """CreateNetworkInterface in the plan's subnet. In prefix mode, when EC2 has no /28
        there (or takes no prefixes), the fallback order: the other tag-matching subnets with
        room for a prefix, most free addresses first; then secondary IPs in the plan's subnet.
        Each variant gets its own ClientToken (a token names one request's parameters); our
        retries of one variant whose answer was lost (a read timeout, a 5xx after EC2 acted)
        carry its token, so EC2 answers the first ENI instead of creating a second one."""
        assert plan.subnet is not None
        tries: list[tuple[Subnet, bool]] = []
        if plan.prefixes and self.prefixes_usable():
            tries.append((plan.subnet, True))
            others = [s for s in self._tagged_subnets(vpc_id)
                      if s.subnet_id != plan.subnet.subnet_id and s.available >= PREFIX_SIZE]
            tries += [(s, True) for s in others]
        # The pod IPs are all secondaries: the ENI's primary IP is never a pod's.
        tries.append((plan.subnet, False))
        for subnet, prefixes in tries:
            if prefixes and not self.prefixes_usable():
                continue  # the instance type refused prefixes: no other subnet will differ
            call = {**params, "SubnetId": subnet.subnet_id, "ClientToken": os.urandom(16).hex()}
            if self.conf.ipv6 and subnet.ipv6_cidr:
                # Dual-stack: the ENI's pods take IPv6 addresses out of one /80 of its own.
                call["Ipv6PrefixCount"] = 1
            if plan.count:  # 0: an ENI for IPv6-only pods, no secondary IPv4
                call["Ipv4PrefixCount" if prefixes else "SecondaryPrivateIpAddressCount"] = \
                    plan.count
            try:
                answer = self.node.ec2.call("CreateNetworkInterface", **call)
            except Ec2Error as exc:
                if prefixes and self._falls_back(exc, f"{subnet.subnet_id} ({subnet.cidr})"):
                    continue
                if exc.aws_code == "InvalidParameterValue" and "sufficient" in exc.message:
                    self.node.forget_subnets(vpc_id)
                    raise TryAgainLater(f"subnet {subnet.subnet_id} has too few free addresses",
                                        exc.message) from exc
                raise exc.as_cni() from exc
            if subnet is not plan.subnet or prefixes != plan.prefixes:
                log.warning("prefix delegation: the new ENI is in %s with %s", subnet.subnet_id,
                            "prefixes" if prefixes else "secondary IPs")
            created: dict[str, Any] = answer["NetworkInterface"]
            return created, subnet
        raise TryAgainLater("no subnet could take a new ENI", "see the log")

    def _tagged_subnets(self, vpc_id: str) -> list[Subnet]:
        tags = self.conf.subnet_tags
        try:
            return [s for s in self.node.subnets(vpc_id) if s.has_tags(tags)]
        except (Ec2Error, CniError) as exc:
            log.info("cannot list the other subnets for a prefix: %s", exc)
            return []

    def _attach(self, eni_id: str, instance_id: str, device_index: int) -> str:
        """Attach, and return the attachment id. Attach has no ClientToken: when it fails
        (including a retry refused because a lost first answer had already attached it), ask
        EC2 what happened before rolling back, so an ENI attached to us is used, not leaked."""
        try:
            answer = self.node.ec2.call("AttachNetworkInterface", NetworkInterfaceId=eni_id,
                                        InstanceId=instance_id, DeviceIndex=device_index)
            return str(answer["AttachmentId"])
        except (Ec2Error, CniError) as exc:
            attached = self._attachment_of(eni_id, instance_id, device_index)
            if attached is not None:
                log.warning("AttachNetworkInterface of %s failed (%s) but EC2 shows it attached "
                            "as %s: using it", eni_id, exc, attached)
                return attached
            self.delete_quietly(eni_id)
            if isinstance(exc, Ec2Error):
                raise exc.as_cni() from exc
            raise

    def _attachment_of(self, eni_id: str, instance_id: str, device_index: int) -> str | None:
        """The ENI's attachment id when EC2 has it attached to this instance at this index."""
        try:
            answer = self.node.ec2.call("DescribeNetworkInterfaces",
                                        NetworkInterfaceIds=[eni_id])
        except (Ec2Error, CniError) as exc:
            log.warning("could not verify the attachment of %s: %s", eni_id, exc)
            return None
        for eni in answer.get("NetworkInterfaces", []):
            att = eni.get("Attachment") or {}
            if (att.get("InstanceId") == instance_id
                    and int(att.get("DeviceIndex", -1)) == device_index
                    and att.get("Status") in ("attaching", "attached")):
                return str(att["AttachmentId"])
        return None

    def ensure_delete_on_termination(self, eni_id: str, attachment: str) -> bool:
        """Mark the attachment DeleteOnTermination (idempotent in EC2). On failure the ENI is
        remembered (``dot-pending:``) and the next refill, ``ipam warm`` or ``gc`` tries again:
        until then, terminating the instance would leave the ENI behind."""
        key = f"dot-pending:{eni_id}"
        try:
            self.node.ec2.call("ModifyNetworkInterfaceAttribute", NetworkInterfaceId=eni_id,
                               Attachment={"AttachmentId": attachment,
                                           "DeleteOnTermination": True})
        except (Ec2Error, CniError) as exc:
            log.warning("could not mark %s delete-on-termination (retried by the next refill, "
                        "ipam warm or gc): %s", eni_id, exc)
            with self.store.transaction():
                self.store.cache_put(key, attachment, DOT_PENDING_TTL)
            return False
        with self.store.transaction():
            self.store.cache_drop(key)
        return True

    def settle_delete_on_termination(self) -> None:
        """Finish the DeleteOnTermination marks left pending (a failed Modify after a create,
        ENIs adopted rather than created): one Describe of them all, one Modify per ENI whose
        attachment lacks it. Off the ADD's path: the refill, ``ipam warm`` and GC call it.
        Failures stay pending for the next one."""
        with self.store.transaction():
            pending = self.store.cache_items("dot-pending:")
            if pending:  # ADDs ask for another try only once this has expired
                self.store.cache_put(DOT_TRIED, self._clock(), DOT_RETRY_AFTER)
        if not pending:
            return
        try:
            found = {e["NetworkInterfaceId"]: e for e in self.node.ec2.paginate(
                "DescribeNetworkInterfaces", "NetworkInterfaces",
                Filters=[{"Name": "network-interface-id", "Values": sorted(pending)}])}
        except (Ec2Error, CniError) as exc:
            log.warning("cannot check DeleteOnTermination of %s now: %s",
                        ", ".join(sorted(pending)), exc)
            return
        instance = self.node.identity.instance_id
        for eni_id in pending:
            att = (found.get(eni_id) or {}).get("Attachment") or {}
            if att.get("InstanceId") != instance or att.get("DeleteOnTermination"):
                # Gone, not ours any more, or already marked: nothing left to do.
                with self.store.transaction():
                    self.store.cache_drop(f"dot-pending:{eni_id}")
                continue
            self.ensure_delete_on_termination(eni_id, str(att["AttachmentId"]))

    def delete_quietly(self, eni_id: str) -> None:
        try:
            self.node.ec2.call("DeleteNetworkInterface", NetworkInterfaceId=eni_id)
        except Ec2Error as exc:
            if exc.aws_code == "InvalidNetworkInterfaceID.NotFound":
                return  # a retry of a delete whose answer was lost: it is gone
            log.warning("could not delete ENI %s after a failed attach (the leaked-ENI sweep "
                        "of cnivpc gc will): %s", eni_id, exc)
        except CniError as exc:
            log.warning("could not delete ENI %s after a failed attach (the leaked-ENI sweep "
                        "of cnivpc gc will): %s", eni_id, exc)

    def detach_and_delete(self, eni_id: str, attachment: str) -> None:
        try:
            self.node.ec2.call("DetachNetworkInterface", AttachmentId=attachment, Force=True)
        except (Ec2Error, CniError) as exc:
            # A retry of a detach whose answer was lost is refused (the attachment is gone):
            # ask EC2 before giving up on the delete.
            if self._attachment_of_any(eni_id) is not None:
                log.warning("could not detach ENI %s (the leaked-ENI sweep of cnivpc gc will "
                            "delete it once detached): %s", eni_id, exc)
                return
        # Delete answers "in use" until the detach completes: a few tries, then leave it to GC.
        for _ in range(10):
            try:
                self.node.ec2.call("DeleteNetworkInterface", NetworkInterfaceId=eni_id)
                return
            except Ec2Error as exc:
                if exc.aws_code == "InvalidNetworkInterfaceID.NotFound":
                    return  # a retry of a delete whose answer was lost: it is gone
                if "in use" not in exc.message:
                    break
            except CniError:
                break
            self._sleep(0.5)
        log.warning("ENI %s detached but not deleted; GC deletes it later", eni_id)

    def _attachment_of_any(self, eni_id: str) -> str | None:
        """The ENI's attachment id while EC2 shows it attached (or attaching) anywhere; None
        when it is detached, gone, or EC2 cannot say."""
        try:
            answer = self.node.ec2.call("DescribeNetworkInterfaces",
                                        NetworkInterfaceIds=[eni_id])
        except Ec2Error as exc:
            if exc.aws_code == "InvalidNetworkInterfaceID.NotFound":
                return None
            log.warning("could not ask EC2 about %s: %s", eni_id, exc)
            return "unknown"
        except CniError as exc:
            log.warning("could not ask EC2 about %s: %s", eni_id, exc)
            return "unknown"
        for eni in answer.get("NetworkInterfaces", []):
            att = eni.get("Attachment") or {}
            if att.get("Status") in ("attaching", "attached"):
                return str(att.get("AttachmentId", "unknown"))
        return None

    def leaked_enis(self, *, delete: bool) -> list[str]:
        """ENIs tagged as this instance's, not attached, seen so twice ≥ LEAK_CONFIRM_AFTER
        apart: deleted when ``delete``. Returns the confirmed ones."""
        instance = self.node.identity.instance_id
        now = self._clock()
        found = list(self.node.ec2.paginate(
            "DescribeNetworkInterfaces", "NetworkInterfaces", MaxResults=100,
            Filters=[{"Name": f"tag:{TAG_INSTANCE}", "Values": [instance]},
                     {"Name": "status", "Values": ["available"]}]))
        confirmed = []
        with self.store.transaction():
            for eni in found:
                key = f"leak-seen:{eni['NetworkInterfaceId']}"
                first = self.store.cache_get(key)
                if first is None:
                    self.store.cache_put(key, now, 24 * 3600)
                elif now - float(first) >= LEAK_CONFIRM_AFTER:
                    confirmed.append(eni["NetworkInterfaceId"])
        for eni_id in confirmed if delete else []:
            try:
                self.node.ec2.call("DeleteNetworkInterface", NetworkInterfaceId=eni_id)
                log.info("deleted leaked ENI %s", eni_id)
                with self.store.transaction():
                    self.store.cache_drop(f"leak-seen:{eni_id}")
            except (Ec2Error, CniError) as exc:
                log.warning("could not delete leaked ENI %s: %s", eni_id, exc)
        return confirmed

    def orphaned_enis(self, vpc_id: str, *, delete: bool) -> list[str]:
        """Cluster-wide: detached ENIs cnivpc created (its tag, this ``clusterName`` when set)
        in the VPC whose instance no longer exists (terminated, or unknown to EC2): an instance
        that died between CreateNetworkInterface and AttachNetworkInterface left them, and no
        node of its own will ever collect them. Deleted when ``delete``. An ENI of a live
        instance is never touched here (that node's own sweep, ``leaked_enis``, owns it)."""
        filters = [{"Name": "vpc-id", "Values": [vpc_id]},
                   {"Name": "status", "Values": ["available"]},
                   {"Name": "tag-key", "Values": [TAG_INSTANCE]}]
        if self.conf.cluster_name:
            filters.append({"Name": f"tag:{TAG_CLUSTER}", "Values": [self.conf.cluster_name]})
        owners: dict[str, str] = {}
        for eni in self.node.ec2.paginate("DescribeNetworkInterfaces", "NetworkInterfaces",
                                          MaxResults=100, Filters=filters):
            tags = {t["Key"]: t["Value"] for t in eni.get("TagSet", [])}
            owners[eni["NetworkInterfaceId"]] = tags.get(TAG_INSTANCE, "")
        if not owners:
            return []
        # A filter, not InstanceIds: EC2 refuses the whole call when one id is unknown.
        alive = set()
        for reservation in self.node.ec2.paginate(
                "DescribeInstances", "Reservations", MaxResults=1000,
                Filters=[{"Name": "instance-id", "Values": sorted(set(owners.values()))}]):
            for inst in reservation.get("Instances", []):
                if inst.get("State", {}).get("Name") not in ("terminated", "shutting-down"):
                    alive.add(inst["InstanceId"])
        orphans = sorted(e for e, owner in owners.items() if owner and owner not in alive)
        for eni_id in orphans if delete else []:
            try:
                self.node.ec2.call("DeleteNetworkInterface", NetworkInterfaceId=eni_id)
                log.info("deleted ENI %s of the gone instance %s", eni_id, owners[eni_id])
            except Ec2Error as exc:
                if exc.aws_code != "InvalidNetworkInterfaceID.NotFound":
                    log.warning("could not delete ENI %s of the gone instance %s: %s", eni_id,
                                owners[eni_id], exc)
        return orphans

    def unassign(self, surplus: list[FreeIP]) -> Unassigned:
        """Unassign IPs already taken out of the pool (``Store.take_free``), per ENI. Never
        raises for EC2: DEL and GC carry on, and the outcome says what happened to each IP."""
        outcome = Unassigned()
        # One call per ENI for its plain IPs and one for its prefixes (whole /28s only: an
        # address of a prefix cannot be unassigned alone).
        batches: dict[tuple[str, bool], list[FreeIP]] = {}
        for f in surplus:
            batches.setdefault((f.eni_id, bool(f.prefix)), []).append(f)
        for (eni_id, whole_prefixes), items in batches.items():
            ips = [f.ip for f in items]
            prefixes = sorted({f.prefix for f in items})
            what = (f"{len(prefixes)} prefixes ({', '.join(prefixes)})" if whole_prefixes
                    else f"{len(items)} IPs")
            try:
                if whole_prefixes:
                    self.node.ec2.call("UnassignPrivateIpAddresses", NetworkInterfaceId=eni_id,
                                       Ipv4Prefixes=prefixes)
                else:
                    self.node.ec2.call("UnassignPrivateIpAddresses", NetworkInterfaceId=eni_id,
                                       PrivateIpAddresses=ips)
                log.info("unassigned %s from %s", what, eni_id)
                outcome.done += ips
                continue
            except (Ec2Error, CniError) as exc:
                failure = f"{eni_id}: {exc}"
            # The unassign may have happened all the same (a lost answer, or a retry refused
            # because the first try had acted): only IPs EC2 still has on the ENI go back to
            # the pool. An IP put back that EC2 no longer has may already be another node's
            # pod's. When EC2 cannot tell us, none go back: the tombstone keeps them out, and
            # reconciliation adopts any that are still there once it has passed.
            try:
                still = set(self.node.eni_ips(eni_id))
            except (Ec2Error, CniError) as verify_exc:
                log.warning("could not unassign %s (%s) nor verify it (%s): left out of the "
                            "pool", ", ".join(ips), failure, verify_exc)
                outcome.unknown += ips
                outcome.errors.append(failure)
                continue
            back = [f for f in items if f.ip in still]
            outcome.done += [f.ip for f in items if f.ip not in still]
            if back:
                log.warning("could not unassign %s: %s; EC2 still has them: back in the pool",
                            ", ".join(f.ip for f in back), failure)
                outcome.kept += [f.ip for f in back]
                outcome.errors.append(failure)
                with self.decide():
                    self.store.put_back(back)
            else:
                log.info("UnassignPrivateIpAddresses on %s answered %s, but EC2 no longer has "
                         "%s: done", eni_id, failure, ", ".join(ips))
        return outcome
