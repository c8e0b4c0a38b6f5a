"""``python -m cnivpc.lab up|down``: run the VPC-in-a-box lab from a shell.

``up [--nodes N] [--instance-type T] [--latency zero|aws-like] [--region R]`` cleans what
SIGKILLed labs left behind, starts EC2 + topology + N nodes + IMDS + fabric, prints ONE JSON line
(see ``Lab.describe``: lab id, endpoints on the host and inside nodes, VPC, subnets with their
gateways, and per node: instance id, netns, MAC, primary IP, ENI, host-side IMDS URL), then runs
until SIGINT or SIGTERM and tears everything down (exit 0).

``demo [--pods N]`` runs cnivpc end to end in a lab (:mod:`cnivpc.lab.demo`).

``chaos --zipapp PATH [--seed S] [--ops N]`` is a seeded chaos run of the IPAM
(:mod:`cnivpc.lab.chaos`).

``down [--lab-id ID]`` stops the live lab(s) (SIGTERM, then SIGKILL after 10 s) and removes every
namespace any lab left; with ``--lab-id`` only that lab. Prints one JSON line of what it removed.

``fault``, ``latency``, ``imds-lag``, ``detach``, ``unassign``, ``fragment``, ``reboot``,
``terminate``, ``endpoint-route``, ``counts``, ``status``: commands to a running lab from another
process, through its control endpoint (``control`` in the ``up`` line); see
:mod:`cnivpc.lab.remote`.

Owns only argument parsing and signal handling; the work is in :mod:`cnivpc.lab.lab` and
:mod:`cnivpc.lab.fabric`. Must not be imported by plugin code.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType

# The commands for a running lab (cnivpc.lab.remote.COMMANDS, kept here so that `up` and
# `down` do not import the client, nor the client this module's lab imports).
REMOTE_COMMANDS = frozenset({"fault", "latency", "imds-lag", "detach", "unassign", "fragment",
                             "reboot", "terminate", "endpoint-route", "counts", "status"})


def _up(args: argparse.Namespace) -> int:
    from .lab import Lab  # moto is slow to import: only for `up`

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    with Lab(nodes=args.nodes, instance_type=args.instance_type, latency=args.latency,
             region=args.region) as lab:
        print(json.dumps(lab.describe(), separators=(",", ":")), flush=True)
        while not stop.wait(1.0):
            pass
    return 0


def _down(args: argparse.Namespace) -> int:
    from . import fabric

    removed = fabric.cleanup_lab(args.lab_id) if args.lab_id else fabric.cleanup_all()
    print(json.dumps({"removed": removed}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:  # its own parser: see cnivpc.lab.demo
        from .demo import main as demo

        return demo(argv[1:])
    if argv[:1] == ["chaos"]:  # its own parser: see cnivpc.lab.chaos
        from .chaos import main as chaos

        return chaos(argv[1:])
    if argv[:1] and argv[0] in REMOTE_COMMANDS:  # talk to a running lab: no moto import
        from . import remote

        control = argparse.ArgumentParser(prog="python -m cnivpc.lab",
                                          description="commands to a running lab")
        remote.build_parser(control)
        return remote.run(control.parse_args(argv))
    parser = argparse.ArgumentParser(prog="python -m cnivpc.lab", description="VPC-in-a-box lab")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a lab and run until SIGINT/SIGTERM")
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--instance-type", default="m5.large")
    up.add_argument("--latency", default="zero", choices=["zero", "aws-like"])
    up.add_argument("--region", default="us-east-1")
    down = sub.add_parser("down", help="stop running labs and remove their leftovers")
    sub.add_parser("demo", help="cnivpc end to end in the lab (see python -m cnivpc.lab demo -h)")
    sub.add_parser("chaos", help="a seeded chaos run of the IPAM (python -m cnivpc.lab chaos -h)")
    for name in sorted(REMOTE_COMMANDS):
        sub.add_parser(name, help=f"to a running lab (see python -m cnivpc.lab {name} -h)")
    down.add_argument("--lab-id", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    return _up(args) if args.command == "up" else _down(args)


if __name__ == "__main__":
    sys.exit(main())
