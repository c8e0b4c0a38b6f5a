"""``cnivpc doctor``: every check a person would make on a node whose pods get no network, each
answered ✓ or ✗ (or - when it cannot be checked) with a hint. Read-only: it never takes the
IPAM lock, opens the IPAM's state read-only (and never creates it), and never changes anything
(IAM checks use EC2's DryRun).

Checks: the instance metadata answers IMDSv2; AWS credentials work; each EC2 action cnivpc
needs is allowed; the IPAM store is healthy; every ENI EC2 says is attached has a kernel link,
and every ENI the store uses is still attached (not detached behind cnivpc's back); every
allocation's netns still exists; no host veth of cnivpc is left without its pod; iptables
works (and which backend); the kernel has ipvlan; with ``ipv6`` (dual-stack), IPv6 is on in
the kernel, the instance type has it and the pods' subnets have an IPv6 /64; the conflist's
cniVersion is one the node's container runtimes can parse (``runtimes``: containerd, CRI-O,
podman, by their version).

Exit status 0 when nothing failed, 3 (EXIT_CHECK_FAILED) otherwise.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from ..aws.ec2 import Ec2Error
from ..aws.metadata import Metadata
from ..cni.errors import CniError
from ..cni.printable import printable
from ..cni.versions import parse as parse_cni_version
from ..plugins.ipam.config import IpamConf
from ..plugins.ipam.node import Node
from ..plugins.ipam.session import ScratchStore
from ..plugins.ipam.store import Store
from . import dualstack, runtimes
from .context import add_conf_arguments, load_ipam_conf, netns_gone, open_node
from .exits import EXIT_CHECK_FAILED, EXIT_OK, Parser
from .output import emit_json

# EC2 actions cnivpc calls, and whether EC2 can check them with DryRun (Assign/Unassign have
# no DryRun parameter: they cannot be tested without changing the ENI).
READ_ACTIONS = ("DescribeInstanceTypes", "DescribeNetworkInterfaces", "DescribeSubnets",
                "DescribeVpcs")
DRY_RUN_ACTIONS = ("CreateNetworkInterface", "AttachNetworkInterface", "DetachNetworkInterface",
                   "DeleteNetworkInterface", "ModifyNetworkInterfaceAttribute")
NO_DRY_RUN = ("AssignPrivateIpAddresses", "UnassignPrivateIpAddresses")
NO_DRY_RUN_IPV6 = ("AssignIpv6Addresses",)  # dual-stack's (``ipv6``): an ENI's /80
IPV6_SYSCTL = "/proc/sys/net/ipv6/conf/all/disable_ipv6"


@dataclass
class Check:
    name: str
    ok: bool | None  # None: could not be checked
    detail: str
    hint: str = ""


class Doctor:
    def __init__(self, conf: IpamConf) -> None:
        self.conf = conf
        self.checks: list[Check] = []
        self.store: Store | None = None
        self.node: Node | None = None

    def add(self, name: str, ok: bool | None, detail: str, hint: str = "") -> None:
        self.checks.append(Check(name, ok, detail, hint))

    def guard(self, name: str, fn: Callable[[], None], hint: str) -> None:
        """Run one check; an unexpected failure is that check's ✗, not the doctor's crash."""
        try:
            fn()
        except (CniError, Ec2Error, OSError) as exc:
            self.add(name, False, str(exc), hint)

    # -- the checks ------------------------------------------------------------------------------

    def imds(self) -> None:
        metadata = Metadata(timeout=1.0)
        ident = metadata.identity()
        self.add("imds", True, f"IMDSv2 answers: {ident.instance_id} ({ident.instance_type}, "
                 f"{ident.availability_zone})")

    def store_health(self) -> None:
        self.store, self.node = open_node(self.conf, read_only=True, need_state=False,
                                          timeout=20)
        if isinstance(self.store, ScratchStore):
            self.add("store", None, f"no IPAM state in {self.conf.data_dir} yet (the first pod "
                     "creates it)")
            return
        verdict = self.store.quick_check()
        ok = verdict == "ok"
        self.add("store", ok, f"{self.conf.data_dir}: {verdict}",
                 "" if ok else "stop pods on this node and move the state file aside")

    def credentials_and_iam(self) -> None:
        assert self.node is not None
        ident = self.node.identity
        ec2 = self.node.ec2
        boot = self.node.interfaces()[0]
        params: dict[str, dict[str, Any]] = {
            "DescribeInstanceTypes": {"InstanceTypes": [ident.instance_type]},
            "DescribeNetworkInterfaces": {"Filters": [{"Name": "attachment.instance-id",
                                                       "Values": [ident.instance_id]}]},
            "DescribeSubnets": {"Filters": [{"Name": "vpc-id", "Values": [boot.vpc_id]}]},
            "DescribeVpcs": {"VpcIds": [boot.vpc_id]},
            "CreateNetworkInterface": {"SubnetId": boot.subnet_id},
            "AttachNetworkInterface": {"NetworkInterfaceId": boot.eni_id,
                                       "InstanceId": ident.instance_id, "DeviceIndex": 9},
            "DetachNetworkInterface": {"AttachmentId": "eni-attach-00000000000000000"},
            "DeleteNetworkInterface": {"NetworkInterfaceId": boot.eni_id},
            "ModifyNetworkInterfaceAttribute": {"NetworkInterfaceId": boot.eni_id,
                                                "SourceDestCheck": {"Value": True}},
        }
        denied: list[str] = []
        for action in READ_ACTIONS:
            try:
                ec2.call(action, **params[action])
            except Ec2Error as exc:
                if exc.aws_code in ("AuthFailure", "UnrecognizedClientException"):
                    self.add("credentials", False, f"{exc.aws_code}: {exc.message}",
                             "check the instance role (or AWS_* credentials) of this node")
                    return
                if exc.aws_code == "UnauthorizedOperation":
                    denied.append(action)
        self.add("credentials", True, f"EC2 answers in {ident.region} with this node's "
                 "credentials")
        for action in DRY_RUN_ACTIONS:
            try:
                ec2.call(action, DryRun=True, **params[action])
            except Ec2Error as exc:
                if exc.aws_code == "UnauthorizedOperation":
                    denied.append(action)
        if denied:
            self.add("iam", False, "not allowed: " + ", ".join(denied),
                     "attach examples/iam-policy.json to the node's instance role")
        else:
            untested = NO_DRY_RUN + (NO_DRY_RUN_IPV6 if self.conf.ipv6 else ())
            self.add("iam", True, f"{len(READ_ACTIONS) + len(DRY_RUN_ACTIONS)} EC2 actions "
                     f"allowed ({', '.join(untested)} cannot be dry-run)")

    def enis_vs_kernel(self) -> None:
        from ..net import eni as eni_links

        assert self.store is not None and self.node is not None
        ident = self.node.identity
        attached = {e["NetworkInterfaceId"]: e for e in self.node.ec2.paginate(
            "DescribeNetworkInterfaces", "NetworkInterfaces", MaxResults=100,
            Filters=[{"Name": "attachment.instance-id", "Values": [ident.instance_id]}])}
        missing_links = [f"{i} ({e['MacAddress']})" for i, e in attached.items()
                         if eni_links.link_by_mac(e["MacAddress"]) is None]
        self.add("eni-links", not missing_links,
                 f"{len(attached)} ENIs attached, all with a kernel link" if not missing_links
                 else "attached but no kernel link: " + ", ".join(missing_links),
                 "" if not missing_links else "wait for udev, or detach and let cnivpc re-add")
        gone = [r.eni_id for r in self.store.enis() if r.eni_id not in attached]
        held = {a.eni_id for a in dualstack.attachments(self.store)}
        self.add("eni-attached", not gone,
                 "every ENI cnivpc uses is attached" if not gone else
                 "no longer attached: " + ", ".join(
                     f"{e}{' (pods use it)' if e in held else ''}" for e in gone),
                 "" if not gone else "someone detached it outside cnivpc: pods on it have "
                 "lost their network; delete those pods, then run 'cnivpc gc'")

    def allocations_vs_netns(self) -> None:
        assert self.store is not None
        allocations = dualstack.attachments(self.store)
        dead = [a for a in allocations if netns_gone(a)]
        self.add("allocations", not dead,
                 f"{len(allocations)} allocations, every netns alive" if not dead else
                 "netns gone for: " + ", ".join(
                     f"{dualstack.both(a)} ({a.pod or a.container_id[:12]})" for a in dead),
                 "" if not dead else "the runtime lost a DEL: run 'cnivpc gc'")

    def leftover_veths(self) -> None:
        from ..net import links, netns
        from ..plugins.ptp import naming

        assert self.store is not None
        live = {a.container_id for a in dualstack.attachments(self.store)}
        with netns.iproute() as ipr:
            ours = [(link.name, naming.parse_alias(link.alias)) for link in links.list_links(ipr)
                    if naming.is_host_veth_name(link.name)]
        leaked = [name for name, owner in ours if owner is None or owner[1] not in live]
        self.add("veths", not leaked,
                 f"{len(ours)} pod veths, each with its pod" if not leaked else
                 "veths without a pod: " + ", ".join(leaked),
                 "" if not leaked else "the runtime lost a DEL: its CNI GC, or "
                 "'ip link del <veth>', removes them")

    def ipv6(self) -> None:
        """Dual-stack (``ipv6``) needs IPv6 in this kernel and network namespace, an instance
        type with IPv6, and an IPv6 /64 on the subnet of every pod ENI, attached or to come
        (a subnet ``subnetTags`` allows): else a pod's ADD fails on it."""
        assert self.node is not None
        problems: list[str] = []
        try:
            with open(IPV6_SYSCTL, encoding="ascii") as f:
                if f.read().strip() != "0":
                    problems.append("IPv6 is disabled here (net.ipv6.conf.all.disable_ipv6=1)")
        except FileNotFoundError:
            problems.append("this kernel has no IPv6 (no /proc/sys/net/ipv6)")
        itype = self.node.identity.instance_type
        facts, why = dualstack.type_ipv6(self.node, itype)
        if facts["ipv6_supported"] is False:
            problems.append(f"{itype} has no IPv6")
        pod_enis = [e for e in self.node.interfaces(ipv6=True)
                    if e.device_number >= self.conf.interface_index]
        problems += [f"{e.eni_id}'s subnet {e.subnet_id} has no IPv6 /64" for e in pod_enis
                     if not e.subnet_ipv6_cidr]
        boot = self.node.interfaces()[0]
        candidates = [s for s in self.node.subnets(boot.vpc_id)
                      if s.has_tags(self.conf.subnet_tags)]
        if candidates and not any(s.ipv6_cidr for s in candidates):
            problems.append("no subnet a new ENI may use has an IPv6 /64: "
                            + ", ".join(s.subnet_id for s in candidates))
        if problems:
            self.add("ipv6", False, "; ".join(problems),
                     "ipv6 needs IPv6 on the node, a Nitro type with IPv6, and an IPv6 CIDR "
                     "on the VPC and on the pods' subnets; or set ipv6 to false")
            return
        per_eni = ("" if facts["ipv6_per_eni"] is None else
                   f", {facts['ipv6_per_eni']} IPv6 addresses or /80 prefixes per ENI")
        self.add("ipv6", True if not why else None,
                 f"IPv6 on, {len(pod_enis)} pod ENI(s) in subnets with an IPv6 /64{per_eni}"
                 + (f" (instance type not checked: {why})" if why else ""))

    def iptables(self) -> None:
        from ..net.iptables import Iptables

        ipt = Iptables()
        ipt.listing("nat")
        version = ipt.version()
        release = ".".join(str(n) for n in version.release)
        self.add("iptables", True, f"iptables {release} ({version.backend} backend) works")

    def ipvlan(self) -> None:
        if os.path.isdir("/sys/module/ipvlan"):
            self.add("ipvlan", True, "the ipvlan module is loaded")
            return
        probe = subprocess.run(["modprobe", "--dry-run", "ipvlan"], capture_output=True,
                               check=False)
        self.add("ipvlan", probe.returncode == 0,
                 "ipvlan can be loaded" if probe.returncode == 0 else
                 "this kernel has no ipvlan module",
                 "" if probe.returncode == 0 else "cnivpc needs CONFIG_IPVLAN (any distro "
                 "kernel has it; minimal kernels may not)")

    def cni_version(self) -> None:
        """A conflist newer than the runtime's libcni fails every ADD (the plugins answer in
        its version, libcni cannot parse that). ✗ for the kubelet's runtimes (containerd,
        CRI-O); for podman alone only a note (it may not read this conflist directory)."""
        want = self.conf.cni_version
        found = runtimes.installed()
        judged = [(rt, runtimes.newest_cni_version(rt.name, rt.version)) for rt in found]
        too_old = [(rt, top) for rt, top in judged
                   if top is not None and parse_cni_version(top) < parse_cni_version(want)]
        if not found:
            self.add("cni-version", None, f'conflist cniVersion "{want}"; no containerd, '
                     "CRI-O or podman found to compare with")
            return
        if too_old:
            cri = [(rt, top) for rt, top in too_old if rt.name in runtimes.CRI_RUNTIMES]
            self.add("cni-version", False if cri else None,
                     f'conflist cniVersion "{want}" is newer than ' + ", ".join(
                         f'{rt.text} parses (up to "{top}")' for rt, top in too_old),
                     f'set "cniVersion": "{min((t for _, t in too_old), key=parse_cni_version)}"'
                     " in the conflist: every ADD fails with \"unsupported CNI result version\""
                     " otherwise")
            return
        known = any(top is not None for _, top in judged)
        self.add("cni-version", True if known else None,
                 f'conflist cniVersion "{want}" parses in ' + ", ".join(
                     rt.text + (" (libcni unknown for this version)" if top is None else "")
                     for rt, top in judged))

    def run(self) -> list[Check]:
        self.guard("imds", self.imds, "is the instance metadata enabled (HttpTokens=required "
                   "works) and reachable from the host network namespace?")
        self.guard("store", self.store_health, f"is {self.conf.data_dir} writable by root?")
        if self.store is not None:
            ok = all(c.ok is not False for c in self.checks)
            if ok:
                self.guard("credentials", self.credentials_and_iam,
                           "check the node's instance role and the EC2 endpoint")
            if any(c.name == "credentials" and c.ok for c in self.checks):
                self.guard("eni", self.enis_vs_kernel, "check EC2 and the node's links")
                if self.conf.ipv6:
                    self.guard("ipv6", self.ipv6, "check EC2 and the node's IPv6")
            self.guard("allocations", self.allocations_vs_netns, "")
            self.guard("veths", self.leftover_veths, "")
        self.guard("iptables", self.iptables, "install iptables (legacy or nft backend)")
        self.guard("ipvlan", self.ipvlan, "cnivpc needs a kernel with ipvlan")
        self.guard("cni-version", self.cni_version, "")
        if self.store is not None:
            self.store.close()
        return self.checks


def main(args: list[str], out: TextIO) -> int:
    parser = Parser(prog="cnivpc doctor", description=__doc__)
    add_conf_arguments(parser)
    opts = parser.parse_args(args)
    checks = Doctor(load_ipam_conf(opts)).run()
    if opts.json:
        emit_json(out, [c.__dict__ for c in checks])
    else:
        for c in checks:
            mark = "-" if c.ok is None else ("✓" if c.ok else "✗")
            out.write(f"{mark} {c.name:<13} {printable(c.detail)}\n")
            if c.hint and not c.ok:
                out.write(f"  {'':<13} hint: {printable(c.hint)}\n")
    return EXIT_OK if all(c.ok is not False for c in checks) else EXIT_CHECK_FAILED
