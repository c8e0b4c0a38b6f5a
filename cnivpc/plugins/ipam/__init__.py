"""The IPAM plugin (``cnivpc-ipam``): VPC IPs for pods from secondary private IPs on the node's
ENIs, through the EC2 API and the instance metadata, with a local container-keyed store.

Modules: ``plugin`` (the five handlers, what the registry loads), ``allocator`` (decisions),
``ec2work`` (the EC2 calls behind them), ``node`` (the instance as AWS sees it, cached),
``store`` (SQLite state), ``config``, ``result``; the host lock is ``plugins.hostlock``.
Importing this package imports nothing.
"""
