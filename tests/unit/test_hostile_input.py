"""Bad and hostile input to every plugin (ipam, ipvlan, ptp, fused) and to the CLI, in-process
through the real dispatcher and plugin registry: every case gets CNI error JSON with the right
code on stdout (or ``error:``/``hint:`` from the CLI), a non-zero exit, no traceback anywhere,
and nothing touched outside the test's state directory (a canary tree next to it, symlink
targets included, is compared byte for byte and mode for mode before and after).

Every case here is refused before a plugin reaches the metadata, EC2 or the kernel: the
dispatcher's boundary (``cni.env``, ``cni.args``, the network name, the config models and
``cni.paths``) is what is under test. The same cases through the built zipapp are in
tests/artifact/test_zipapp_hostile_input.py."""

from __future__ import annotations

import io
import json
import os
import stat
from dataclasses import dataclass
from typing import Any

import pytest

from cnivpc import plugins
from cnivpc.cli import main as cli_main
from cnivpc.cni import logs
from cnivpc.cni.paths import UnsafePath, ensure_dir, open_file
from cnivpc.cni.printable import printable
from cnivpc.cni.skel import MAX_STDIN, Dispatcher
from cnivpc.plugins.hostlock import host_lock
from cnivpc.plugins.ipam.store import Store
from tests.support.hostile import Root, config, env

PROGRAMS = ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp", "cnivpc")
ESC = "\x1b[31m"


# -- the harness -------------------------------------------------------------------------------

@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.stdout)
        return doc


def run(program: str, stdin: bytes | str | dict[str, Any], **env: str) -> Outcome:
    if isinstance(stdin, dict):
        stdin = json.dumps(stdin)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    out, err = io.StringIO(), io.StringIO()
    dispatcher = Dispatcher(name=program, load=lambda: plugins.load(program), getenv=env.get,
                            stdin=io.BytesIO(stdin), stdout=out, stderr=err)
    code = dispatcher.run()
    logs.close()  # the log file is read by the test: close it now
    return Outcome(code, out.getvalue(), err.getvalue())


def refused(out: Outcome, code: int) -> dict[str, Any]:
    """A CNI error with ``code``, exit 1, one JSON document, no traceback anywhere."""
    assert out.code == 1, out
    assert "Traceback" not in out.stdout and "Traceback" not in out.stderr, out.stderr
    doc = out.doc
    assert doc["code"] == code, doc
    assert set(doc) <= {"cniVersion", "code", "msg", "details"}
    return doc




# -- CNI_* variables: code 4 on ADD and CHECK --------------------------------------------------

BAD_ENV = {
    "cid-dotdot": {"CNI_CONTAINERID": "../../etc/passwd"},
    "cid-slash": {"CNI_CONTAINERID": "a/b"},
    "cid-space": {"CNI_CONTAINERID": "abc def"},
    "cid-newline": {"CNI_CONTAINERID": "abc\nERROR forged"},
    "cid-300-chars": {"CNI_CONTAINERID": "a" * 300},
    "cid-leading-dash": {"CNI_CONTAINERID": "-rf"},
    "cid-escape": {"CNI_CONTAINERID": "abc" + ESC},
    "ifname-16-bytes": {"CNI_IFNAME": "x" * 16},
    "ifname-slash": {"CNI_IFNAME": "a/b"},
    "ifname-dotdot": {"CNI_IFNAME": ".."},
    "ifname-colon": {"CNI_IFNAME": "eth0:1"},
    "ifname-space": {"CNI_IFNAME": "eth 0"},
    "netns-relative": {"CNI_NETNS": "var/run/netns/x"},
    "netns-newline": {"CNI_NETNS": "/var/run/netns/x\nERROR forged"},
    "args-escape-in-pod-name": {"CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={ESC}x"},
    "args-newline-in-value": {"CNI_ARGS": "K8S_POD_NAME=web\nERROR forged"},
    "args-double-equals": {"CNI_ARGS": "K8S_POD_NAME=a=b"},
    "args-empty-key": {"CNI_ARGS": "=;K8S_POD_NAME=x"},
    "args-no-equals": {"CNI_ARGS": "IgnoreUnknown=1;garbage"},
    "args-space-in-key": {"CNI_ARGS": "K8S POD=x"},
    "args-namespace-path": {"CNI_ARGS": "K8S_POD_NAMESPACE=../etc;K8S_POD_NAME=x"},
    "args-pod-name-too-long": {"CNI_ARGS": "K8S_POD_NAME=" + "a" * 254},
    "args-bidi-override": {"CNI_ARGS": "K8S_POD_NAME=web\u202e1"},
}


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
@pytest.mark.parametrize("case", list(BAD_ENV))
@pytest.mark.parametrize("program", PROGRAMS)
def test_bad_env_is_code_4(root: Root, program: str, case: str, command: str) -> None:
    doc = refused(run(program, config(program, root), **env(command, **BAD_ENV[case])), 4)
    assert "CNI_" in doc["msg"]
    assert not (root.state / "data").exists()  # refused before the plugin ran


# A DEL for an attachment no ADD could have made has nothing to undo: success, no output,
# and the plugin never runs (no state is even created).
NEVER_ADDED = [c for c in BAD_ENV if c.startswith(("cid-", "ifname-"))]


@pytest.mark.parametrize("case", NEVER_ADDED)
@pytest.mark.parametrize("program", PROGRAMS)
def test_del_of_an_impossible_attachment_succeeds_doing_nothing(root: Root, program: str,
                                                                case: str) -> None:
    out = run(program, config(program, root), **env("DEL", **BAD_ENV[case]))
    assert (out.code, out.stdout) == (0, ""), out
    assert "nothing to do" in out.stderr and "Traceback" not in out.stderr
    assert list(root.state.iterdir()) == []


# The IPAM's DEL needs neither the netns nor CNI_ARGS: invalid ones are set aside, and the DEL
# runs (and releases what the store holds) without them.
@pytest.mark.parametrize("case", [c for c in BAD_ENV if c.startswith(("netns-", "args-"))])
def test_ipam_del_sets_aside_a_bad_netns_or_cni_args(root: Root, case: str) -> None:
    conf = config("cnivpc-ipam", root)
    with Store.open(conf["dataDir"]) as store, store.transaction():
        store.add_free(["10.0.0.5"], "eni-1")
        store.allocate("10.0.0.5", "c0ffee", "eth0", "default/web-1", network="net")
    out = run("cnivpc-ipam", conf, **env("DEL", **BAD_ENV[case]))
    assert (out.code, out.stdout) == (0, ""), out
    assert "setting aside" in out.stderr
    with Store.open(conf["dataDir"]) as store:
        assert store.allocations() == []


@pytest.mark.parametrize("program", PROGRAMS)
def test_missing_container_id_still_fails_del(root: Root, program: str) -> None:
    refused(run(program, config(program, root), **env("DEL", CNI_CONTAINERID="")), 4)


# -- stdin: code 6 ----------------------------------------------------------------------------

BAD_STDIN: dict[str, bytes] = {
    "empty": b"",
    "not-json": b"{name: net",
    "truncated": b'{"cniVersion": "1.1.0", "name": "ne',
    "array": b"[1, 2]",
    "string": b'"net"',
    "not-utf8": b'{"name": "\xff\xfe"}',
    "nested-100000-deep": b"[" * 100_000,
    "over-4-MiB": b'{"name": "' + b"a" * MAX_STDIN + b'"}',
    "cniVersion-number": b'{"cniVersion": 1.1, "name": "net"}',
}


@pytest.mark.parametrize("case", list(BAD_STDIN))
@pytest.mark.parametrize("program", PROGRAMS)
def test_bad_stdin_is_code_6(root: Root, program: str, case: str) -> None:
    refused(run(program, BAD_STDIN[case], **env()), 6)


# -- the config: code 7 (1 for a version) ------------------------------------------------------

BAD_NAMES: dict[str, Any] = {
    "missing": None, "empty": "", "slash": "a/b", "dotdot": "..", "traversal": "../../etc",
    "space": "my net", "escape": "net" + ESC, "newline": "net\nx", "leading-dot": ".net",
    "97-chars": "n" * 97, "number": 5, "list": ["net"],
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
@pytest.mark.parametrize("program", PROGRAMS)
def test_bad_network_name_is_code_7(root: Root, program: str, case: str) -> None:
    conf = config(program, root, name=BAD_NAMES[case])
    if BAD_NAMES[case] is None:
        del conf["name"]
    doc = refused(run(program, conf, **env()), 7)
    assert doc["msg"] == "invalid network name"


BAD_PATHS = {
    "relative": "var/lib/cnivpc", "dotdot": "/var/lib/../../etc", "nul": "/var/lib/a\x00b",
    "newline": "/var/lib/a\nb", "escape": "/var/lib/" + ESC, "5000-bytes": "/" + "a" * 5000,
    "number": 7, "list": ["/var/lib/cnivpc"],
}
PATH_KEYS = {"cnivpc-ipam": ("dataDir", "lockPath", "logFile"), "cnivpc-ipvlan": ("logFile",),
             "cnivpc-ptp": ("logFile",), "cnivpc": ("logFile", "ipam.dataDir", "ipam.lockPath")}


@pytest.mark.parametrize("case", list(BAD_PATHS))
@pytest.mark.parametrize(("program", "key"),
                         [(p, k) for p, keys in PATH_KEYS.items() for k in keys])
def test_bad_config_path_is_code_7(root: Root, program: str, key: str, case: str) -> None:
    conf = config(program, root)
    section, _, name = key.rpartition(".")
    (conf[section] if section else conf)[name] = BAD_PATHS[case]
    doc = refused(run(program, conf, **env()), 7)
    assert name in doc.get("details", "") + doc["msg"]
    assert "\x1b" not in doc.get("details", "")  # echoed back escaped (JSON does it)


BAD_VALUES: dict[str, tuple[str, dict[str, Any]]] = {
    "ipam-warm-target-huge": ("cnivpc-ipam", {"warmIPTarget": 10**400}),
    "ipam-timeout-string": ("cnivpc-ipam", {"timeout": "forever"}),
    "ipam-sg-not-sg": ("cnivpc-ipam", {"secGroupIds": ["; rm -rf /"]}),
    "ipam-route-not-cidr": ("cnivpc-ipam", {"routeToCidrs": ["10.0.0.0/33"]}),
    "ipam-subnet-tags-list": ("cnivpc-ipam", {"subnetTags": ["a"]}),
    "ipvlan-master-slash": ("cnivpc-ipvlan", {"master": "../eth0"}),
    "ipvlan-master-too-long": ("cnivpc-ipvlan", {"master": "x" * 16}),
    "ipvlan-mode-bogus": ("cnivpc-ipvlan", {"mode": "l2; reboot"}),
    "ptp-host-if-slash": ("cnivpc-ptp", {"hostInterface": "a/b"}),
    "ptp-container-if-missing": ("cnivpc-ptp", {"containerInterface": ""}),
    "ptp-node-ports-injection": ("cnivpc-ptp", {"nodePorts": "1:2 -j ACCEPT"}),
    "ptp-mark-huge": ("cnivpc-ptp", {"nodePortMark": 2**64}),
    "ptp-mtu-string": ("cnivpc-ptp", {"mtu": "9001; x"}),
    "fused-ipam-section-string": ("cnivpc", {"ipam": "x"}),
    "fused-ptp-section-list": ("cnivpc", {"ptp": []}),
    "fused-ptp-section-missing": ("cnivpc", {"ptp": None}),
    "fused-ipam-bad-key": ("cnivpc", {"ipam": {"warmIPTarget": -5}}),
    "prevresult-garbage": ("cnivpc-ptp", {"prevResult": {"ips": [{"address": "nope"}]}}),
    "prevresult-string": ("cnivpc-ipvlan", {"prevResult": "x"}),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_config_value_is_code_7(root: Root, case: str) -> None:
    program, extra = BAD_VALUES[case]
    conf = config(program, root, **extra)
    conf = {k: v for k, v in conf.items() if v is not None}
    refused(run(program, conf, **env()), 7)


@pytest.mark.parametrize("version", ["9.9.9", "1" * 5000, "1.1.0\n", "x"])
@pytest.mark.parametrize("program", PROGRAMS)
def test_unsupported_version_is_code_1_and_not_echoed(root: Root, program: str,
                                                      version: str) -> None:
    doc = refused(run(program, config(program, root, cniVersion=version), **env()), 1)
    assert doc["cniVersion"] == ("9.9.9" if version == "9.9.9" else "1.1.0")
    assert len(json.dumps(doc)) < 400


# -- config paths that are symlinks: refused, nothing written through them ----------------------

@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
@pytest.mark.parametrize("program", ["cnivpc-ipam", "cnivpc"])
def test_data_dir_symlink_is_refused(root: Root, program: str, command: str) -> None:
    link = root.link("data", root.canary_dir)
    conf = config(program, root, **{"cni.dev/valid-attachments": []})
    if command in ("CHECK",):
        conf["prevResult"] = {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.5/32"}]}
    doc = refused(run(program, conf, **env(command)), 7)
    assert "symbolic link" in doc["msg"] and str(link) in doc["msg"]
    assert link.is_symlink()


@pytest.mark.parametrize("target", ["canary", "dangling"])
@pytest.mark.parametrize("program", PROGRAMS)
def test_log_file_symlink_is_not_followed(root: Root, program: str, target: str) -> None:
    aim = root.canary if target == "canary" else root.outside / "created-through-link"
    link = root.link("cnivpc.log", aim)
    # ipvlan and ptp without prevResult, and the IPAM with a symlinked dataDir, fail right
    # after the log file was set up: nothing else runs.
    root.link("data", root.canary_dir)
    conf = config(program, root, logFile=str(link), logLevel="debug")
    out = run(program, conf, **env())
    refused(out, 7)
    assert "cannot open log file" in out.stderr and "symbolic link" in out.stderr
    assert not (root.outside / "created-through-link").exists()


def test_log_file_fifo_is_refused_without_blocking(root: Root) -> None:
    fifo = root.state / "cnivpc.log"
    os.mkfifo(fifo)
    out = run("cnivpc-ipvlan", config("cnivpc-ipvlan", root, logFile=str(fifo)), **env())
    refused(out, 7)
    assert "not a regular file" in out.stderr


def test_lock_path_symlink_creates_nothing(root: Root) -> None:
    link = root.link("ipam.lock", root.outside / "created-through-link")
    with pytest.raises(UnsafePath, match="symbolic link"), host_lock(str(link), 1.0):
        pass
    assert not (root.outside / "created-through-link").exists()


def test_state_files_are_made_0600_and_0700_whatever_they_were(root: Root) -> None:
    data = root.state / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "ipam.db").touch(mode=0o644)
    (data / "ipam.db").chmod(0o644)
    log = root.state / "logs" / "deep" / "cnivpc.log"
    with Store.open(str(data)):
        pass
    os.close(open_file(str(log)))
    ensure_dir(str(data))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "ipam.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    for directory in (log.parent, log.parent.parent):  # created: 0700, intermediates too
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    existing = root.state / "old.log"
    existing.write_text("x")
    existing.chmod(0o666)
    os.close(open_file(str(existing), os.O_WRONLY | os.O_APPEND))
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600


def test_store_refuses_a_symlinked_wal(root: Root) -> None:
    data = root.state / "data"
    data.mkdir()
    (data / "ipam.db-wal").symlink_to(root.canary)
    with pytest.raises(UnsafePath, match="symbolic link"):
        Store.open(str(data))


# -- what reaches a log line or a terminal ------------------------------------------------------

def test_debug_log_has_the_config_redacted_never_raw_stdin(root: Root) -> None:
    log = root.state / "cnivpc.log"
    conf = config("cnivpc-ipvlan", root, logFile=str(log), logLevel="debug", mode="l3",
                  awsSecretAccessKey="AKIA-very-secret", password="hunter2",
                  custom={"token": "tok-123", "color": "blue"},
                  args={"cni": {"apiToken": "nested-secret", "ips": ["10.0.0.9"]}})
    refused(run("cnivpc-ipvlan", conf, **env()), 7)
    text = log.read_text()
    line = next(x for x in text.splitlines() if " config: " in x)
    logged = json.loads(line.split(" config: ", 1)[1])
    assert logged["mode"] == "l3" and logged["name"] == "net"
    assert logged["awsSecretAccessKey"] == logged["password"] == "<redacted>"
    assert logged["custom"] == "<redacted>"  # unknown key: passed through, never logged
    assert logged["args"] == {"cni": {"apiToken": "<redacted>", "ips": ["10.0.0.9"]}}
    for secret in ("AKIA-very-secret", "hunter2", "tok-123", "blue", "nested-secret"):
        assert secret not in text


def test_log_lines_escape_control_characters(root: Root) -> None:
    log = root.state / "cnivpc.log"
    conf = config("cnivpc-ipvlan", root, logFile=str(log), master="eth\x1b" + "0")
    out = run("cnivpc-ptp", config("cnivpc-ptp", root, logFile=str(log),
                                   hostInterface="lo\x1b[2J"), **env())
    refused(out, 7)
    out = run("cnivpc-ipvlan", conf, **env(CNI_IFNAME="e\x1b[2J"))
    refused(out, 7)
    text = log.read_text() + out.stderr
    assert "\x1b" not in text and "\\x1b" in text
    # one log line per record: nothing forged a line
    assert all(line[:4].isdigit() for line in log.read_text().splitlines())


def test_printable() -> None:
    assert printable("web-1") == "web-1"
    assert printable("a\x1b[31mb\nc\x00\x7f\x9b") == "a\\x1b[31mb\\x0ac\\x00\\x7f\\x9b"
    assert printable("a\u202eb\u2066c") == "a\\u202eb\\u2066c"
    assert printable("é ü 日本") == "é ü 日本"


# -- the CLI ----------------------------------------------------------------------------------

def cli(*argv: str) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(list(argv), out, err)
    return Outcome(code, out.getvalue(), err.getvalue())


def cli_refused(out: Outcome) -> None:
    assert out.code != 0, out
    assert "Traceback" not in out.stderr and "\x1b" not in out.stderr + out.stdout
    lines = out.stderr.splitlines()
    assert any(x.startswith("error: ") for x in lines), out.stderr
    assert any(x.startswith("hint: ") for x in lines), out.stderr


def hostile_store(root: Root) -> str:
    data = str(root.state / "data")
    with Store.open(data) as store, store.transaction():
        store.add_free(["10.0.0.5", "10.0.0.6"], "eni-1")
        # Written as an older version (or a hand) could have: the store keeps what it got.
        store.allocate("10.0.0.5", "c0ffee", "eth0", f"default/{ESC}evil\x1b[2J\nforged",
                       network="net")
        store.allocate("10.0.0.6", "c1", "e\x1b[1m", "default/ok", network="net")
    return data


@pytest.mark.parametrize("command", [("ipam", "allocations"), ("status",)])
def test_cli_tables_escape_what_the_store_holds(root: Root, command: tuple[str, ...]) -> None:
    data = hostile_store(root)
    conf = root.state / "conf.json"
    conf.write_text(json.dumps(config("cnivpc-ipam", root, dataDir=data,
                                      logFile=str(root.state / "none.log"))))
    out = cli(*command, "--conf", str(conf))
    assert "\x1b" not in out.stdout and "\\x1b[31mevil" in out.stdout, out
    assert "Traceback" not in out.stderr
    rows = [x for x in out.stdout.splitlines() if "10.0.0.5" in x]
    assert len(rows) == 1 and "forged" in rows[0]  # the newline did not start a row


def write(root: Root, name: str, text: str) -> str:
    path = root.state / name
    path.write_text(text)
    return str(path)


CLI_CASES: dict[str, Any] = {
    "conf-not-json": lambda r: ("--conf", write(r, "c.json", "{nope")),
    "conf-array": lambda r: ("--conf", write(r, "c.json", "[]")),
    "conf-no-ipam": lambda r: ("--conf", write(r, "c.json", '{"type": "cnivpc-ptp"}')),
    "conf-missing": lambda r: ("--conf", str(r.state / "nothing.json")),
    "conf-is-dir": lambda r: ("--conf", str(r.state)),
    "conf-data-dir-relative": lambda r: ("--conf", write(r, "c.json", json.dumps(
        {"type": "cnivpc-ipam", "name": "n", "dataDir": "rel/dir"}))),
    "conf-data-dir-escape": lambda r: ("--conf", write(r, "c.json", json.dumps(
        {"type": "cnivpc-ipam", "name": "n", "dataDir": "/x/" + ESC}))),
    "conf-log-file-dotdot": lambda r: ("--conf", write(r, "c.json", json.dumps(
        {"type": "cnivpc-ipam", "name": "n", "logFile": "/var/log/../../etc/x"}))),
    "data-dir-symlink": lambda r: ("--data-dir", str(r.link("data", r.canary_dir))),
    "data-dir-is-file": lambda r: ("--data-dir", str(r.canary)),
    "data-dir-missing": lambda r: ("--data-dir", str(r.state / "none")),
    "data-dir-escape": lambda r: ("--data-dir", str(r.state / ("d" + ESC))),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
@pytest.mark.parametrize("command", [("ipam", "allocations"), ("ipam", "free")])
def test_cli_bad_input_is_error_and_hint(root: Root, command: tuple[str, ...],
                                         case: str) -> None:
    cli_refused(cli(*command, *CLI_CASES[case](root)))


def test_cli_unknown_command_with_escapes(root: Root) -> None:
    cli_refused(cli(ESC + "boom\x1b[2J"))
