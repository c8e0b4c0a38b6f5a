"""The lab: a simulated AWS VPC ("VPC-in-a-box") that cnivpc is proven against.

Owns nothing at import time: this package body is empty on purpose. Subpackages:

* ``cnivpc.lab.ec2``      -- a strict simulated EC2 API (moto's server behind our strictness,
  latency, throttling and fault middleware), its control surface and the standard topology.
* ``cnivpc.lab.profiles`` -- latency profiles (``zero`` for unit tests, ``aws-like``).
* ``cnivpc.lab.faults``   -- injectable faults (5xx, lost responses and requests, throttling
  bursts, lost attaches).
* ``cnivpc.lab.endpoint`` / ``cnivpc.lab.remote`` -- a running lab's control endpoint and the
  ``python -m cnivpc.lab fault|reboot|counts|...`` client that talks to it.
* the IMDSv2 emulator, node namespaces and ENI hot-plug fabric (``imds``, ``fabric``, ``nodes``).

Rules: the lab needs the optional extra ``lab`` (``moto[server]``). Plugin code (``cnivpc.cni``,
``cnivpc.ipam``, ``cnivpc.plugins``, ``cnivpc.net``, ``cnivpc.aws``) must never import it, and it is
never shipped in the zipapp.
"""
