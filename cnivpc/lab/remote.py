"""``python -m cnivpc.lab <command>``: break a running lab from another process.

Owns the command line of the control commands and finding the lab to send them to; the
commands themselves run inside the lab (:mod:`cnivpc.lab.endpoint`). Each prints ONE JSON line
(the lab's answer) on stdout and exits 0, or prints ``error: ...`` and ``hint: ...`` on stderr
and exits 1 (no running lab, several and no ``--lab-id``, a command the lab refused). ::

    fault fail ACTION [--count N] [--status 500|503]
    fault throttle [ACTION] [--count N]                      RequestLimitExceeded (503)
    fault lost-response ACTION [--count N] [--hold S | --drop]
    fault lost-request ACTION [--count N] [--hold S]
    fault deny PATTERN...        fault allow PATTERN...      UnauthorizedOperation (403)
    fault hide-attach (--eni ENI | --node NODE)
    fault list                   fault clear
    latency [PROFILE] [--default S] [--api ACTION=S ...] [--attach-delay S] [--detach-delay S]
    imds-lag [--lag S] [--remove-lag S]
    detach ENI                   unassign ENI [IP|PREFIX ...]
    fragment SUBNET [--leave N]  no free /28 left in SUBNET but N (InsufficientCidrBlocks)
    reboot NODE                  terminate NODE
    endpoint-route on|off        the S3/DynamoDB gateway endpoint in the VPC's route table
    counts [--node NODE] [--reset]
    status

ACTION is an EC2 action or a glob (``Create*``); NODE an index (0), an instance id or a node
name. Every command takes ``--lab-id``; without it the only running lab is used.

Stdlib only, and no moto: it must start fast and run anywhere the lab's files are readable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .endpoint import control_socket, request
from .fabric import live_labs


class RemoteError(Exception):
    def __init__(self, error: str, hint: str) -> None:
        super().__init__(error)
        self.error = error
        self.hint = hint


def find_lab(lab_id: str | None) -> Path:
    """The control socket of lab ``lab_id``, or of the only running lab."""
    running = live_labs()
    if lab_id is None:
        if not running:
            raise RemoteError("no running lab", "start one with `python -m cnivpc.lab up`")
        if len(running) > 1:
            raise RemoteError(f"{len(running)} labs are running: {', '.join(running)}",
                              "pick one with --lab-id (the lab_id that `up` printed)")
        lab_id = running[0]
    elif lab_id not in running:
        raise RemoteError(f"no running lab {lab_id}",
                          f"running: {', '.join(running) or 'none'}"
                          " (`python -m cnivpc.lab up` prints its lab_id)")
    path = control_socket(lab_id)
    if not path.exists():
        raise RemoteError(f"lab {lab_id} serves no control endpoint ({path} is missing)",
                          "it is still starting, or predates the endpoint: restart it")
    return path


def _api(values: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values:
        action, sep, seconds = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--api {item!r}: want ACTION=SECONDS")
        out[action] = float(seconds)
    return out


def build_parser(parser: argparse.ArgumentParser) -> None:
    """Add the control commands to the ``python -m cnivpc.lab`` subcommand ``parser``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lab-id", default=None,
                        help="the lab to talk to (default: the only running one)")
    common.add_argument("--timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    fault = sub.add_parser("fault", help="arm, list or clear EC2 faults")
    kinds = fault.add_subparsers(dest="kind", required=True)
    fail = kinds.add_parser("fail", parents=[common], help="HTTP 500/503 for the next N calls")
    fail.add_argument("action")
    fail.add_argument("--count", type=int, default=1)
    fail.add_argument("--status", type=int, default=500, choices=[500, 503])
    throttle = kinds.add_parser("throttle", parents=[common],
                                help="RequestLimitExceeded for the next N calls")
    throttle.add_argument("action", nargs="?", default="*")
    throttle.add_argument("--count", type=int, default=1)
    lost = kinds.add_parser("lost-response", parents=[common],
                            help="apply the next N calls at once, withhold their answers")
    lost.add_argument("action")
    lost.add_argument("--count", type=int, default=1)
    how = lost.add_mutually_exclusive_group()
    how.add_argument("--hold", type=float, default=70.0,
                     help="seconds the answer is held (default 70: past botocore's 60 s)")
    how.add_argument("--drop", action="store_true", help="close the connection instead")
    lost_req = kinds.add_parser("lost-request", parents=[common],
                                help="hold the next N calls, never apply them")
    lost_req.add_argument("action")
    lost_req.add_argument("--count", type=int, default=1)
    lost_req.add_argument("--hold", type=float, default=70.0)
    for name, text in (("deny", "UnauthorizedOperation for actions matching a glob"),
                       ("allow", "withdraw deny patterns")):
        p = kinds.add_parser(name, parents=[common], help=text)
        p.add_argument("patterns", nargs="+", metavar="PATTERN")
    hide = kinds.add_parser("hide-attach", parents=[common],
                            help="attaches succeed in EC2 but never show up in the node")
    target = hide.add_mutually_exclusive_group(required=True)
    target.add_argument("--eni")
    target.add_argument("--node")
    kinds.add_parser("list", parents=[common], help="what is armed")
    kinds.add_parser("clear", parents=[common],
                     help="disarm all, empty the deny list, refill buckets, release held answers")

    latency = sub.add_parser("latency", parents=[common], help="EC2 latency profile at run time")
    latency.add_argument("profile", nargs="?", choices=["zero", "aws-like"])
    latency.add_argument("--default", type=float, help="seconds for actions not in --api")
    latency.add_argument("--api", action="append", default=[], metavar="ACTION=SECONDS")
    latency.add_argument("--attach-delay", type=float, dest="attach_visible_delay",
                         help="seconds before an attached ENI shows up in the node")
    latency.add_argument("--detach-delay", type=float, dest="detach_visible_delay")
    lag = sub.add_parser("imds-lag", parents=[common], help="IMDS propagation lag at run time")
    lag.add_argument("--lag", type=float, help="seconds before new ENIs/IPs show in IMDS")
    lag.add_argument("--remove-lag", type=float, dest="remove_lag",
                     help="seconds removed ENIs/IPs keep showing")

    detach = sub.add_parser("detach", parents=[common], help="detach an ENI behind cnivpc's back")
    detach.add_argument("eni")
    unassign = sub.add_parser("unassign", parents=[common],
                              help="unassign secondary IPs, /28 prefixes, IPv6 addresses and "
                                   "/80 prefixes (default: all) behind cnivpc's back")
    unassign.add_argument("eni")
    unassign.add_argument("ips", nargs="*", metavar="IP|PREFIX")
    frag = sub.add_parser("fragment", parents=[common],
                          help="squat one address of every free /28 of a subnet (other "
                               "tenants): prefixes fail with InsufficientCidrBlocks")
    frag.add_argument("subnet")
    frag.add_argument("--leave", type=int, default=0, help="free /28s to leave (default 0)")
    for name, text in (("reboot", "reboot a node: links gone, new boot id, ENIs kept"),
                       ("terminate", "terminate a node's instance")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("node")
    route = sub.add_parser("endpoint-route", parents=[common],
                           help="route the S3/DynamoDB prefix-list CIDRs to the gateway "
                                "endpoint (on) or to the internet (off)")
    route.add_argument("state", choices=("on", "off"))
    counts = sub.add_parser("counts", parents=[common],
                            help="EC2 calls per node and action (failed and lost included)")
    counts.add_argument("--node")
    counts.add_argument("--reset", action="store_true", help="zero the counters after reading")
    sub.add_parser("status", parents=[common], help="the lab, its knobs and armed faults")


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(endpoint command, its arguments) for parsed ``args``."""
    if args.command == "fault":
        fields = {"fail": ("action", "count", "status"), "throttle": ("action", "count"),
                  "lost-response": ("action", "count", "hold", "drop"),
                  "lost-request": ("action", "count", "hold"),
                  "deny": ("patterns",), "allow": ("patterns",), "hide-attach": ("eni", "node"),
                  "list": (), "clear": ()}[args.kind]
        return f"fault.{args.kind}", {f: getattr(args, f) for f in fields}
    if args.command == "endpoint-route":
        return "endpoint-route", {"routed": args.state == "on"}
    fields = {"latency": ("profile", "default", "attach_visible_delay", "detach_visible_delay"),
              "imds-lag": ("lag", "remove_lag"), "detach": ("eni",), "unassign": ("eni", "ips"),
              "fragment": ("subnet", "leave"),
              "reboot": ("node",), "terminate": ("node",), "counts": ("node", "reset"),
              "status": ()}[args.command]
    out = {f: getattr(args, f) for f in fields}
    if args.command == "latency":
        out["api"] = _api(args.api)
    return args.command, out


def run(args: argparse.Namespace) -> int:
    try:
        name, payload = _request(args)
        path = find_lab(args.lab_id)
        try:
            answer = request(path, name, payload, timeout=args.timeout)
        except (OSError, ValueError) as exc:
            raise RemoteError(f"talking to {path}: {exc}",
                              "is the lab still running? (`python -m cnivpc.lab status`)"
                              ) from None
        if not answer.get("ok"):
            raise RemoteError(str(answer.get("error")), str(answer.get("hint") or ""))
    except (RemoteError, argparse.ArgumentTypeError) as exc:
        error = exc.error if isinstance(exc, RemoteError) else str(exc)
        hint = exc.hint if isinstance(exc, RemoteError) else "see -h"
        print(f"error: {error}", file=sys.stderr)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return 1
    print(json.dumps(answer["result"], separators=(",", ":")), flush=True)
    return 0
