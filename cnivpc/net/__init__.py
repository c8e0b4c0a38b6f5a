"""Host networking primitives: the only package that imports pyroute2 (enforced by ruff's
banned-api rule) and the only one that runs iptables.

Each module owns one kind of kernel object: ``netns`` (entering network namespaces),
``links`` (veths, lookups, addresses), ``routes`` (routes and policy rules), ``sysctl``
(``/proc/sys``), ``iptables`` (the iptables binaries) and ``arp`` (gratuitous ARP). Netlink
requests go through ``rtnl``, our own small NETLINK_ROUTE client that uses pyroute2's message
classes (not its ``IPRoute``, whose import costs far more). Failures are raised as the typed
errors of ``errors``, which are CNI errors, so plugins may let them propagate. Nothing here
imports pydantic, botocore or any plugin; importing the package itself is free (pyroute2 is
loaded by ``_nl`` on first use).
"""
