"""The lab's strict simulated EC2 (moto behind AWS's rules, latency, throttling and faults).

Public names: :class:`Ec2Lab` (run it), :class:`LabControl` (``lab.control``: profile, throttling,
faults, IAM deny), :class:`AttachmentEvent` (what ``on_attach``/``on_detach`` callbacks get),
:class:`Ec2Error`, :class:`LabRequestHandler` (werkzeug handler answering ``Server: AmazonEC2``
without access logs, for extra sockets serving ``Ec2Lab.app``), and the ``topology`` module (the
standard VPC used by every test).

Needs the ``lab`` extra (``moto[server]``, pinned in pyproject). Never imported by plugin code,
never in the zipapp.
"""

from __future__ import annotations

from . import topology
from .control import LabControl
from .errors import Ec2Error
from .events import AttachmentEvent
from .server import Ec2Lab, LabRequestHandler

__all__ = [
    "AttachmentEvent",
    "Ec2Error",
    "Ec2Lab",
    "LabControl",
    "LabRequestHandler",
    "topology",
]
