"""``python -m cnivpc.lab demo``: cnivpc end to end in the lab, in under two minutes.

Starts the lab (simulated EC2 + IMDSv2 + 2 node namespaces), installs the built zipapp's
``cnivpc-*`` symlinks in a throw-away bin directory, brings pods up through the real chain
(examples/cnivpc.conflist, run the way a runtime runs it), prints a table of the pods (IP, ENI,
subnet, device) and connectivity checks with ✓/✗, deletes the pods and checks the nodes are
clean, then tears the lab down. Needs a kernel with ipvlan: ``./build/dev demo`` runs it inside
user-mode-linux when the host has none. ``--prefixes`` runs the same with prefix delegation
(``ipv4Prefixes``): every pod's address comes out of a /28 prefix of its ENI, and the checks
prove the VPC delivers those addresses with real packets. ``--dual-stack`` gives the pods IPv6
too (``ipv6``: one address each out of a /80 of their ENI, over the ipvlan leg) and checks it
across nodes and against the lab's egress-only internet, and adds an IPv6-only pod (``ipv4:
false``, a second network) that reaches the IPv4 internet through its node. Every run routes
the S3 and DynamoDB prefix lists over the ENI (``routeServicePrefixLists``) and checks that the
lab's gateway endpoint sees the pod's own address. Never imported by plugin code.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .probes import serve_whoami, whoami
from .runtime import Runtime, lab_conflist


class Demo:
    def __init__(self, zipapp: Path, pods: int, shiv_root: Path | None = None,
                 prefixes: bool = False, dual_stack: bool = False) -> None:
        self.dual_stack = dual_stack
        self.zipapp = zipapp
        self.pods = pods
        self.shiv_root = shiv_root
        self.prefixes = prefixes
        self.started = time.monotonic()
        self.failures = 0

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def check(self, label: str, fn: Callable[[], bool]) -> None:
        try:
            ok = fn()
        except Exception as exc:  # a check that crashes is a failed check, shown as such
            ok = False
            label += f" ({exc})"
        self.failures += not ok
        print(f"    {'✓' if ok else '✗'} {label}", flush=True)

    def run(self) -> int:
        from .lab import Lab

        work = Path(tempfile.mkdtemp(prefix="cnivpc-demo-"))
        bin_dir = work / "bin"
        bin_dir.mkdir()
        (bin_dir / "cnivpc").symlink_to(self.zipapp.resolve())
        for name in ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"):
            (bin_dir / name).symlink_to("cnivpc")
        env = {"SHIV_ROOT": str(self.shiv_root or work / "shiv"),
               "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773"}
        self.say("starting the lab: simulated EC2 (moto + AWS's rules), IMDSv2, 2 nodes ...")
        with Lab(nodes=2, instance_type="c5.xlarge") as lab:
            nodes = [lab.node(0), lab.node(1)]
            for n in nodes:
                self.say(f"node {n.instance_id} ({n.instance_type}, {n.availability_zone}) "
                         f"netns {n.netns}, eth0 {n.primary_ip}")
            confs = [lab_conflist(work, i) for i in range(len(nodes))]
            for conf in confs:
                conf["plugins"][0]["routeServicePrefixLists"] = ["s3", "dynamodb"]
            if self.prefixes:
                self.say("prefix delegation: ipv4Prefixes, pods get addresses out of /28s")
                for conf in confs:
                    conf["plugins"][0]["ipv4Prefixes"] = True
            if self.dual_stack:
                self.say("dual-stack: ipv6, each pod also gets an IPv6 out of its ENI's /80")
                for conf in confs:
                    conf["plugins"][0]["ipv6"] = True
            runtimes = [Runtime(bin_dir, conf, n.netns, env)
                        for conf, n in zip(confs, nodes, strict=True)]
            placement = [0] * self.pods + [1]
            pods: list[dict[str, Any]] = []
            for i, node in enumerate(placement):
                name = f"pod{i + 1}" if node == 0 else "other"
                netns = lab.fabric.add_netns(f"demo-{name}")
                t = time.monotonic()
                result = runtimes[node].add(name, f"/var/run/netns/{netns}")
                ip = result["ips"][0]["address"]
                ip6 = next((i["address"].split("/")[0] for i in result["ips"]
                            if ":" in i["address"]), "")
                pods.append({"name": name, "node": node, "netns": netns, "cidr": ip,
                             "ip": ip.split("/")[0], "ip6": ip6, "result": result})
                self.say(f"ADD {name} on node {node}: {ip}{' ' + ip6 if ip6 else ''} "
                         f"(ipam -> ipvlan -> ptp, {time.monotonic() - t:.1f}s)")
            self.table(lab, pods)
            self.checks(lab, nodes, pods)
            if self.dual_stack:
                self.ipv6_only(lab, nodes, confs[0], bin_dir, env, pods)
            for pod in pods:
                runtimes[pod["node"]].delete(pod["name"], f"/var/run/netns/{pod['netns']}")
            self.say(f"DEL of {len(pods)} pods done (ptp -> ipvlan -> ipam)")
            self.check("nodes clean: no pod veth, no per-pod rule, no masq chain left",
                       lambda: all(self.clean(n.netns) for n in nodes))
            self.say("tearing the lab down")
        total = time.monotonic() - self.started
        print(f"\ndemo {'ok' if not self.failures else 'FAILED'}: {self.failures} failed "
              f"check(s), {total:.0f}s", flush=True)
        return 1 if self.failures else 0

    def table(self, lab: Any, pods: list[dict[str, Any]]) -> None:
        import botocore.session

        client = botocore.session.get_session().create_client(
            "ec2", region_name=lab.region, endpoint_url=lab.ec2.url,
            aws_access_key_id="lab", aws_secret_access_key="lab")
        enis: dict[str, tuple[str, str, str, str]] = {}
        for eni in client.describe_network_interfaces()["NetworkInterfaces"]:
            where = (eni["NetworkInterfaceId"], eni["SubnetId"],
                     str(eni.get("Attachment", {}).get("DeviceIndex", "-")))
            for addr in eni["PrivateIpAddresses"]:
                enis[addr["PrivateIpAddress"]] = (*where, "secondary IP")
            for prefix in eni.get("Ipv4Prefixes", []):
                net = ipaddress.ip_network(prefix["Ipv4Prefix"])
                for host in range(net.num_addresses):
                    enis[str(net.network_address + host)] = (*where, str(net))
        for pod in pods:
            pod["from"] = enis.get(pod["ip"], ("?", "?", "?", "?"))[3]
        rows = [("pod", "node", "IP", "ENI", "subnet", "device", "from", "MAC (= the ENI's)")]
        for pod in pods:
            eni_id, subnet, device, source = enis.get(pod["ip"], ("?", "?", "?", "?"))
            mac = pod["result"]["interfaces"][0]["mac"]
            rows.append((pod["name"], str(pod["node"]), pod["cidr"], eni_id, subnet, device,
                         source, mac))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        print()
        for row in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        print(flush=True)

    def ns(self, netns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True,
                              text=True, timeout=60)

    def ping(self, netns: str, ip: str) -> bool:
        return self.ns(netns, "ping", "-n", "-c", "1", "-W", "2", ip).returncode == 0

    def whoami(self, server_ns: str, client_ns: str, ip: str, port: int) -> str:
        server = serve_whoami(server_ns, port)
        try:
            return whoami(client_ns, ip, port) or "no answer"
        finally:
            server.kill()

    def checks(self, lab: Any, nodes: list[Any], pods: list[dict[str, Any]]) -> None:
        mine = [p for p in pods if p["node"] == 0]
        other = next(p for p in pods if p["node"] == 1)
        a = mine[0]
        gateway = a["result"]["ips"][0]["gateway"]
        if self.prefixes:
            self.check("every pod's address is out of a /28 prefix of its ENI",
                       lambda: all(p.get("from", "").endswith("/28") for p in pods))
        print("connectivity (real packets):")
        self.check(f"{a['name']} -> subnet router {gateway} (ipvlan on its ENI)",
                   lambda: self.ping(a["netns"], gateway))
        if len(mine) > 1:
            b = mine[1]
            self.check(f"{a['name']} -> {b['name']} {b['ip']} (same node)",
                       lambda: self.ping(a["netns"], b["ip"]))
        self.check(f"{a['name']} -> {other['name']} {other['ip']} (other node)",
                   lambda: self.ping(a["netns"], other["ip"]))
        self.check(f"{a['name']} -> its node {nodes[0].primary_ip} (unnumbered veth)",
                   lambda: self.ping(a["netns"], nodes[0].primary_ip))
        self.check(f"node -> {a['name']} {a['ip']} (unnumbered veth)",
                   lambda: self.ping(nodes[0].netns, a["ip"]))
        seen = self.whoami(nodes[1].netns, a["netns"], nodes[1].primary_ip, 7101)
        self.check(f"a VPC host sees {a['name']} as {seen} (its own IP: no NAT in the VPC)",
                   lambda: seen == a["ip"])
        seen = self.whoami(lab.fabric.inet_ns, a["netns"], "198.51.100.10", 7102)
        self.check(f"the internet sees {a['name']} as {seen} (the node's IP: SNAT, ipMasq)",
                   lambda: seen == nodes[0].primary_ip)
        s3 = lab.fabric.endpoint_cidrs.get("s3", ())
        if s3:
            target = str(ipaddress.ip_network(s3[0]).network_address + 10)
            seen = self.whoami(lab.fabric.vpce_ns, a["netns"], target, 7103)
            self.check(f"the S3 gateway endpoint ({target}) sees {a['name']} as {seen} "
                       "(its own IP: routeServicePrefixLists, no NAT)",
                       lambda: seen == a["ip"])
        if self.dual_stack:
            self.dual_stack_checks(lab, a, other)

    def dual_stack_checks(self, lab: Any, a: dict[str, Any], other: dict[str, Any]) -> None:
        from .fabric import INET6_ADDR

        print("IPv6 (over the ipvlan leg, the pod's own address):")
        self.check(f"{a['name']} -> {other['name']} {other['ip6']} (other node, IPv6)",
                   lambda: self.ns(a["netns"], "ping", "-6", "-n", "-c", "1", "-W", "2",
                                   other["ip6"]).returncode == 0)
        server = serve_whoami(lab.fabric.inet_ns, 7104, ipv6=True)
        try:
            seen = whoami(a["netns"], INET6_ADDR, 7104) or "no answer"
        finally:
            server.kill()
        self.check(f"the IPv6 internet sees {a['name']} as {seen} (its own IPv6: no NAT)",
                   lambda: seen == a["ip6"])
        server = serve_whoami(a["netns"], 7105, ipv6=True)
        try:
            inbound = whoami(lab.fabric.inet_ns, a["ip6"], 7105, timeout=3.0)
        finally:
            server.kill()
        self.check(f"the internet cannot connect to {a['name']} (egress-only gateway: "
                   f"{'refused' if not inbound else 'CONNECTED as ' + inbound})",
                   lambda: inbound == "")

    def ipv6_only(self, lab: Any, nodes: list[Any], conf: dict[str, Any], bin_dir: Path,
                  env: dict[str, str], pods: list[dict[str, Any]]) -> None:
        """An IPv6-only pod (``ipv4: false``) on node 0, in a second network on the same
        state: its IPv6 from the ENI, IPv4 only through its node."""
        from .fabric import INET6_ADDR

        v6 = json.loads(json.dumps(conf))
        v6["name"] = "cnivpc-v6"
        for key in ("routeToCidrs", "routeServicePrefixLists"):
            v6["plugins"][0].pop(key, None)
        v6["plugins"][0]["ipv4"] = False
        runtime = Runtime(bin_dir, v6, nodes[0].netns, env)
        netns = lab.fabric.add_netns("demo-v6only")
        path = f"/var/run/netns/{netns}"
        t = time.monotonic()
        result = runtime.add("v6only", path)
        addrs = [i["address"].split("/")[0] for i in result["ips"]]
        ip6 = next(a for a in addrs if ":" in a)
        egress = next((a for a in addrs if ":" not in a), "")
        self.say(f"ADD v6only on node 0 (ipv4: false): {ip6}, egress IPv4 {egress or 'none'} "
                 f"(node-local) ({time.monotonic() - t:.1f}s)")
        other = next(p for p in pods if p["node"] == 1)
        print("IPv6-only pod (no VPC IPv4):")
        self.check(f"v6only -> {other['name']} {other['ip6']} (other node, IPv6)",
                   lambda: self.ns(netns, "ping", "-6", "-n", "-c", "1", "-W", "2",
                                   other["ip6"]).returncode == 0)
        server = serve_whoami(lab.fabric.inet_ns, 7106, ipv6=True)
        try:
            seen6 = whoami(netns, INET6_ADDR, 7106) or "no answer"
        finally:
            server.kill()
        self.check(f"the IPv6 internet sees v6only as {seen6} (its own IPv6)",
                   lambda: seen6 == ip6)
        seen = self.whoami(lab.fabric.inet_ns, netns, "198.51.100.10", 7107)
        self.check(f"the IPv4 internet sees v6only as {seen} (through its node: SNAT of "
                   f"{egress or '-'})", lambda: seen == nodes[0].primary_ip)
        runtime.delete("v6only", path)
        runtime.delete("v6only", path)  # DEL is repeatable

    def clean(self, netns: str) -> bool:
        links = json.loads(self.ns(netns, "ip", "-j", "link", "show").stdout or "[]")
        rules = self.ns(netns, "ip", "rule").stdout
        nat = self.ns(netns, "iptables-save", "-t", "nat").stdout
        return (not any(link["ifname"].startswith("cnp") for link in links)
                and "lookup" not in rules.replace("lookup local", "").replace(
                    "lookup main", "").replace("lookup default", "")
                and "CNI-" not in nat)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cnivpc.lab demo", description=__doc__)
    parser.add_argument("--zipapp", default=str(Path(__file__).resolve().parents[2]
                                                / "build/out/cnivpc"))
    parser.add_argument("--pods", type=int, default=2, help="pods on the first node")
    parser.add_argument("--shiv-root", help="where the zipapp is (or gets) extracted: an "
                        "extraction made beforehand saves the first pod that work")
    parser.add_argument("--prefixes", action="store_true",
                        help="prefix delegation: pods get addresses out of /28 prefixes")
    parser.add_argument("--dual-stack", action="store_true",
                        help="pods get an IPv6 address too, over their ENI")
    args = parser.parse_args(argv)
    zipapp = Path(args.zipapp)
    if not zipapp.exists():
        print(f"error: {zipapp} is missing: ./build/dev zipapp builds it", file=sys.stderr)
        return 2
    shiv_root = Path(args.shiv_root) if args.shiv_root else None
    return Demo(zipapp, max(1, args.pods), shiv_root, prefixes=args.prefixes,
                dual_stack=args.dual_stack).run()
