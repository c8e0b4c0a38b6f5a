"""The IPAM's EC2 work: what happens outside the host lock once a decision is taken. A batched
Assign, a new ENI (created with its IPs and tags, attached, DeleteOnTermination, its link
waited for and brought up, or rolled back when it never appears), unassigning surplus IPs, and
the sweep for leaked ENIs (ours, detached, seen twice ``LEAK_CONFIRM_AFTER`` apart).

``Ec2Work`` is the allocator's base class: the decisions live in ``allocator``, the calls here;
every store update is made through ``decide()`` (lock + transaction), never across a call.
Imports the store, the node view (aws/) and, lazily, ``net.eni``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ...aws.ec2 import Ec2Error
from ...cni.errors import CniError, TryAgainLater
from .config import IpamConf
from .node import Node, Subnet
from .store import EniRecord, FreeIP, Store

log = logging.getLogger("cnivpc.ipam")

# Tags on ENIs we create: GC finds leaked ones by them, and the IAM policy scopes by them.
TAG_INSTANCE = "cnivpc.io/instance-id"
TAG_CLUSTER = "cnivpc.io/cluster"
TAG_CREATED = "cnivpc.io/created-at"
# A detached ENI with our tags is deleted by GC only when seen detached twice this far apart:
# an ENI between CreateNetworkInterface and AttachNetworkInterface is briefly "available" too.
LEAK_CONFIRM_AFTER = 300.0


@dataclass(frozen=True)
class Plan:
    """EC2 work to do: ``assign`` ``count`` IPs to ``eni_id``, or ``create`` an ENI with
    ``count`` IPs in ``subnet`` at ``device_index``."""

    kind: str
    count: int
    eni_id: str = ""
    device_index: int | None = None
    subnet: Subnet | None = None


class Ec2Work:
    """EC2 calls on behalf of the allocator (see the module docstring)."""

    conf: IpamConf
    store: Store
    node: Node
    _clock: Callable[[], float]
    _sleep: Callable[[float], None]

    def decide(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _boot_eni(self) -> EniRecord:
        raise NotImplementedError

    def _assign(self, plan: Plan) -> None:
        try:
            answer = self.node.ec2.call("AssignPrivateIpAddresses",
                                        NetworkInterfaceId=plan.eni_id,
                                        SecondaryPrivateIpAddressCount=plan.count)
        except Ec2Error as exc:
            if exc.aws_code == "PrivateIpAddressLimitExceeded":
                # Our count was stale (IPs added outside cnivpc): learn the truth and go on.
                self._refresh_eni_ips(plan.eni_id)
                return
            if exc.aws_code == "InsufficientFreeAddressesInSubnet":
                raise TryAgainLater(f"the subnet of {plan.eni_id} has no free address",
                                    exc.message) from exc
            raise exc.as_cni() from exc
        new = [a["PrivateIpAddress"] for a in answer.get("AssignedPrivateIpAddresses", [])]
        log.info("assigned %d IPs to %s: %s", len(new), plan.eni_id, ", ".join(new))
        with self.decide():
            self.store.add_free(new, plan.eni_id)

    def _refresh_eni_ips(self, eni_id: str) -> None:
        ips = self.node.eni_ips(eni_id)
        with self.decide():
            # Unknown IPs on our ENI were put there by someone else: give them a cooldown.
            self.store.add_free(ips, eni_id, freed_at=self._clock())

    def _create(self, plan: Plan) -> None:
        from ...net import eni as eni_links

        assert plan.subnet is not None and plan.device_index is not None
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
            "SubnetId": plan.subnet.subnet_id, "Groups": groups,
            "Description": f"cnivpc pod ENI of {identity.instance_id}",
            "TagSpecifications": [{"ResourceType": "network-interface", "Tags": tags}],
        }
        if plan.count > 1:  # the ENI's primary IP is one of the pod IPs
            params["SecondaryPrivateIpAddressCount"] = plan.count - 1
        try:
            created = self.node.ec2.call("CreateNetworkInterface", **params)["NetworkInterface"]
        except Ec2Error as exc:
            if exc.aws_code == "InvalidParameterValue" and "sufficient" in exc.message:
                self.node.forget_subnets(boot.vpc_id)
                raise TryAgainLater(f"subnet {plan.subnet.subnet_id} has too few free addresses",
                                    exc.message) from exc
            raise exc.as_cni() from exc
        eni_id, mac = created["NetworkInterfaceId"], created["MacAddress"]
        ips = [a["PrivateIpAddress"] for a in created.get("PrivateIpAddresses", [])]
        primary = created.get("PrivateIpAddress") or (ips[0] if ips else "")
        try:
            attachment = self.node.ec2.call(
                "AttachNetworkInterface", NetworkInterfaceId=eni_id,
                InstanceId=identity.instance_id, DeviceIndex=plan.device_index)["AttachmentId"]
        except CniError:
            self._delete_quietly(eni_id)
            raise
        except Ec2Error as exc:
            self._delete_quietly(eni_id)
            raise exc.as_cni() from exc
        try:
            self.node.ec2.call("ModifyNetworkInterfaceAttribute", NetworkInterfaceId=eni_id,
                               Attachment={"AttachmentId": attachment,
                                           "DeleteOnTermination": True})
        except (Ec2Error, CniError) as exc:
            log.warning("could not mark %s delete-on-termination (GC will clean it): %s",
                        eni_id, exc)
        try:
            link = eni_links.wait_for_link(mac, self.node.deadline)
            eni_links.bring_up(link, self.conf.mtu or eni_links.mtu_of(boot.link))
        except CniError as exc:
            log.error("ENI %s (%s) attached but no link appeared: rolling it back", eni_id, mac)
            self._detach_and_delete(eni_id, attachment)
            raise TryAgainLater(f"ENI {eni_id} did not appear in the kernel in time",
                                str(exc)) from exc
        record = EniRecord(eni_id=eni_id, mac=mac, device_index=plan.device_index,
                           subnet_id=plan.subnet.subnet_id, subnet_cidr=plan.subnet.cidr,
                           vpc_id=boot.vpc_id, vpc_cidrs=boot.vpc_cidrs, link=link.name,
                           primary_ip=primary)
        log.info("created %s (%s, %s) at device %d in %s with %d IPs", eni_id, mac, link.name,
                 plan.device_index, plan.subnet.subnet_id, len(ips))
        with self.decide():
            self.store.put_eni(record)
            self.store.add_free(ips, eni_id)
        self.node.forget_subnets(boot.vpc_id)  # its free count just dropped

    def _delete_quietly(self, eni_id: str) -> None:
        try:
            self.node.ec2.call("DeleteNetworkInterface", NetworkInterfaceId=eni_id)
        except (Ec2Error, CniError) as exc:
            log.warning("could not delete ENI %s after a failed attach (GC will): %s",
                        eni_id, exc)

    def _detach_and_delete(self, eni_id: str, attachment: str) -> None:
        try:
            self.node.ec2.call("DetachNetworkInterface", AttachmentId=attachment, Force=True)
        except (Ec2Error, CniError) as exc:
            log.warning("could not detach ENI %s (GC will): %s", eni_id, exc)
            return
        # Delete answers "in use" until the detach completes: a few tries, then leave it to GC.
        for _ in range(10):
            try:
                self.node.ec2.call("DeleteNetworkInterface", NetworkInterfaceId=eni_id)
                return
            except Ec2Error as exc:
                if "in use" not in exc.message:
                    break
            except CniError:
                break
            self._sleep(0.5)
        log.warning("ENI %s detached but not deleted; GC deletes it later", eni_id)

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

    def _unassign(self, surplus: list[FreeIP]) -> None:
        by_eni: dict[str, list[FreeIP]] = {}
        for f in surplus:
            by_eni.setdefault(f.eni_id, []).append(f)
        for eni_id, items in by_eni.items():
            try:
                self.node.ec2.call("UnassignPrivateIpAddresses", NetworkInterfaceId=eni_id,
                                   PrivateIpAddresses=[f.ip for f in items])
                log.info("unassigned %d surplus IPs from %s", len(items), eni_id)
            except (Ec2Error, CniError) as exc:
                # DEL never fails for EC2: the IPs go back to the pool; GC retries later.
                log.warning("could not unassign %s from %s: %s",
                            ", ".join(f.ip for f in items), eni_id, exc)
                with self.decide():
                    self.store.put_back(items)
