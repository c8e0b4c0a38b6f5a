"""DEL and GC: remove one attachment's per-pod state, found from names alone, so it works
whatever the config says (``ipMasq`` on or off), without a netns, without prevResult, after a
failed ADD, and twice.

Per attachment: the ``iif <host veth>`` rules and their tables, the masq chain and every rule
jumping to it (found by target, so no pod IP is needed), and the host veth (its peer, and every
route through either end, go with it). Shared NodePort state is never removed. Each step runs
even when an earlier one failed; the failures are reported together at the end.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...cni import logs
from ...cni.errors import CniError, InternalError
from ...cni.plugin import Request
from ...net import iptables, links, netns, routes
from ...net.errors import IptablesError, IptablesNotFound, NetnsNotFound, NotANetns
from ...net.iptables import Iptables
from . import lock, naming
from .attachment import Attachment
from .config import PtpConf

log = logs.get("ptp")


def drop_policy(host: Any, veth: str, extra_tables: Iterable[int] = ()) -> None:
    """Delete every rule ``iif <veth>`` and flush the tables they (and ``extra_tables``)
    point at, unless another rule still uses a table."""
    rules = routes.list_rules(host)
    mine = [r for r in rules if r.iifname == veth]
    for rule in mine:
        routes.delete_rule(host, rule)
    others = {r.table for r in rules if r.iifname != veth}
    for table in {r.table for r in mine} | set(extra_tables):
        if table not in others and table not in routes.RESERVED_TABLES:
            routes.flush_table(host, table)


def teardown_masq(ipt: Iptables, chain: str) -> bool:
    """Delete every nat rule jumping to ``chain``, then the chain, in one iptables-restore
    after one listing; False if none existed."""
    chains, rules = ipt.listing("nat", containing=chain)
    commands = [["-D", c, *r] for c, r in rules if iptables.jump_target(r) == chain]
    if chain in chains:
        commands += [["-F", chain], ["-X", chain]]
    ipt.apply({"nat": commands})
    return bool(commands)


def teardown(host: Any, att: Attachment, errors: list[CniError],
             versions: Sequence[int] = (4, 6)) -> None:
    """Remove one attachment's host state (its nat rules in the IP ``versions`` it may have
    used); failures are appended to ``errors``."""
    _attempt(errors, drop_policy, host, att.host_veth)
    for version in versions:
        _attempt(errors, teardown_masq, Iptables(ipv6=version == 6), att.chain)
    _attempt(errors, links.delete, host, att.host_veth)


def _attempt(errors: list[CniError], fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except IptablesNotFound as exc:
        # No ip6tables (or iptables) binary: ADD could not have created rules with it.
        log.debug("skipped: %s", exc)
    except CniError as exc:
        log.warning("cleanup step %s failed: %s", fn.__name__, exc)
        errors.append(exc)


def _raise(errors: list[CniError], what: str) -> None:
    if not errors:
        return
    if len(errors) == 1:
        raise errors[0]
    raise InternalError(f"{what}: {len(errors)} cleanup steps failed",
                        "; ".join(str(e) for e in errors))


def delete(req: Request[PtpConf]) -> None:
    conf, cmd = req.conf, req.cmd
    att = Attachment(conf.name, cmd.container_id, cmd.ifname)
    errors: list[CniError] = []
    # prevResult (given on DEL from 0.4.0) says which families ADD touched; without it (an
    # older runtime, or DEL after a failed ADD) both are cleaned.
    ips = req.prev_result.ips if req.prev_result else []
    versions = sorted({ip.ip.version for ip in ips}) or [4, 6]
    with lock.host_lock(), netns.iproute() as host:
        teardown(host, att, errors, versions)
    if conf.ip_masq and cmd.netns:
        _attempt(errors, _delete_pod_masq, cmd.netns, cmd.ifname, versions)
    _raise(errors, "DEL")


def change_pod_masq(ipt: Iptables, ifname: str, add: bool) -> list[str] | None:
    """Append (``add``) or delete the pod-side MASQUERADE rule; the rule if that changed
    anything. ``--random-fully`` is tried first instead of asking ``iptables --version`` (one
    exec less per ADD and DEL): an iptables older than 1.6.2 rejects the option (exit 2,
    naming it), and the rule is retried without it.

    ADD appends without checking first (one exec, not two): the pod's netns is new, a failed
    ADD removes the rule it added, and the spec never sends a second ADD for an attachment
    without a DEL; even then the copy would be the same MASQUERADE, never matched, gone with
    the netns."""
    for random_fully in (True, False):
        rule = naming.pod_masq_rule(ifname, random_fully)
        try:
            changed = (ipt.append if add else ipt.delete)("nat", "POSTROUTING", rule)
        except IptablesError as exc:
            if random_fully and "random-fully" in exc.details:
                continue
            raise
        return rule if changed else None
    return None  # pragma: no cover - the loop always returns or raises


def _delete_pod_masq(netns_path: str, ifname: str, versions: list[int]) -> None:
    """The pod-side MASQUERADE, when the pod netns is still there (it usually is: the
    runtime removes the netns after DEL)."""
    try:
        for version in versions:
            change_pod_masq(Iptables(ipv6=version == 6, netns_path=netns_path), ifname, False)
    except (NetnsNotFound, NotANetns):
        return  # the sandbox is gone, and its rules with it
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def gc(req: Request[PtpConf]) -> None:
    """Remove the state of every attachment of this network that is not in
    ``valid_attachments``: veths recognised by their alias, masq chains by their comment,
    and rules whose host veth no longer exists. Without the list it refuses (code 7) and
    removes nothing."""
    valid = req.valid_attachments.require()
    valid_ids = req.valid_attachments.container_ids()
    network = req.conf.name
    errors: list[CniError] = []
    with lock.host_lock(), netns.iproute() as host:
        present = links.list_links(host)
        for link in present:
            owner = naming.parse_alias(link.alias)
            if owner and owner[0] == network and (owner[1], owner[2]) not in valid:
                log.info("GC: removing stale attachment %s %s", owner[1], owner[2])
                teardown(host, Attachment(*owner), errors)
        names = {link.name for link in present}
        for rule in routes.list_rules(host):
            if naming.is_host_veth_name(rule.iifname) and rule.iifname not in names:
                # The veth died with its netns and nobody ran DEL: the rule matches by name
                # and would otherwise hold its table forever.
                _attempt(errors, drop_policy, host, rule.iifname)
        for ipt in (Iptables(), Iptables(ipv6=True)):
            _attempt(errors, _gc_chains, ipt, network, valid_ids)
    _raise(errors, "GC")


def _gc_chains(ipt: Iptables, network: str, valid_ids: set[str]) -> None:
    _, rules = ipt.listing("nat", containing=network)  # our comments name the network
    stale: set[str] = set()
    for chain, rule in rules:
        owner = naming.parse_masq_comment(iptables.comment_of(rule))
        if owner is None or owner[0] != network or owner[1] in valid_ids:
            continue
        expected = naming.masq_chain(network, owner[1])
        if chain == expected or iptables.jump_target(rule) == expected:
            stale.add(expected)
    for chain in sorted(stale):
        log.info("GC: removing stale masquerade chain %s", chain)
        teardown_masq(ipt, chain)
