"""Bad and hostile input through the built zipapp, exec'd the way a runtime (or an operator)
does: every plugin (cnivpc-ipam, cnivpc-ipvlan, cnivpc-ptp through their symlinks, the fused
``cnivpc`` with CNI_COMMAND) answers with CNI error JSON carrying the right code, exits
non-zero, prints no traceback, and touches nothing outside its state directory (a canary tree
next to it, symlink targets included, is compared before and after); the CLI answers
``error:``/``hint:``. The in-process suite with every case is tests/unit/test_hostile_input.py;
this one checks the shipped artifact behaves the same."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from tests.support import hostile
from tests.support.hostile import Root, config
from tests.support.zipapp import Run, Zipapp

pytestmark = pytest.mark.artifact

PROGRAMS = ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp", "cnivpc")
ESC = "\x1b[31m"


def env(command: str = "ADD", **over: str) -> dict[str, str]:
    """The shared valid environment, with a CNI_PATH (a runtime always passes one)."""
    return hostile.env(command, **{"CNI_PATH": "/nonexistent", **over})


def refused(run: Run, code: int) -> dict[str, Any]:
    assert run.returncode != 0, run
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    doc = run.doc
    assert doc["code"] == code, doc
    return doc


CASES: dict[str, tuple[dict[str, str], Any, int]] = {
    # name: (env overrides, config overrides or raw stdin, code)
    "bad-json": ({}, "{nope", 6),
    "wrong-type-cniVersion": ({}, {"cniVersion": 1}, 6),
    "huge-nesting": ({}, "[" * 50_000, 6),
    "cid-dotdot": ({"CNI_CONTAINERID": "../../etc/passwd"}, {}, 4),
    "cid-space": ({"CNI_CONTAINERID": "a b"}, {}, 4),
    "cid-newline": ({"CNI_CONTAINERID": "abc\nERROR forged"}, {}, 4),
    "cid-300-chars": ({"CNI_CONTAINERID": "a" * 300}, {}, 4),
    "ifname-too-long": ({"CNI_IFNAME": "x" * 16}, {}, 4),
    "ifname-slash": ({"CNI_IFNAME": "a/b"}, {}, 4),
    "netns-relative": ({"CNI_NETNS": "run/netns/x"}, {}, 4),
    "args-escape": ({"CNI_ARGS": f"K8S_POD_NAME={ESC}evil"}, {}, 4),
    "args-equals-abuse": ({"CNI_ARGS": "K8S_POD_NAME=a=b;=;x"}, {}, 4),
    "name-slash": ({}, {"name": "a/b"}, 7),
    "name-dotdot": ({}, {"name": ".."}, 7),
    "missing-name": ({}, {"name": None}, 7),
    "logfile-relative": ({}, {"logFile": "cnivpc.log"}, 7),
    "logfile-dotdot": ({}, {"logFile": "/var/log/../../etc/cron.d/x"}, 7),
    "version-unsupported": ({}, {"cniVersion": "9.9.9"}, 1),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("program", PROGRAMS)
def test_hostile_input_is_a_cni_error(zipapp: Zipapp, root: Root, program: str,
                                      case: str) -> None:
    over, conf, code = CASES[case]
    if isinstance(conf, dict):
        full = config(program, root, **conf)
        stdin = json.dumps({k: v for k, v in full.items() if v is not None})
    else:
        stdin = conf
    refused(zipapp.run(program, env(**over), stdin), code)
    assert not (root.state / "data").exists()


@pytest.mark.parametrize("program", PROGRAMS)
def test_del_of_an_impossible_attachment_succeeds(zipapp: Zipapp, root: Root,
                                                  program: str) -> None:
    run = zipapp.run(program, env("DEL", CNI_CONTAINERID="../x"),
                     json.dumps(config(program, root)))
    assert (run.returncode, run.stdout) == (0, ""), run
    assert list(root.state.iterdir()) == []


@pytest.mark.parametrize("program", ["cnivpc-ipam", "cnivpc"])
def test_data_dir_symlink_is_refused(zipapp: Zipapp, root: Root, program: str) -> None:
    (root.state / "data").symlink_to(root.canary_dir)
    doc = refused(zipapp.run(program, env(), json.dumps(config(program, root))), 7)
    assert "symbolic link" in doc["msg"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_log_file_symlink_is_not_followed(zipapp: Zipapp, root: Root, program: str) -> None:
    (root.state / "cnivpc.log").symlink_to(root.canary)
    (root.state / "data").symlink_to(root.canary_dir)  # the IPAM stops right after logging
    conf = config(program, root, logFile=str(root.state / "cnivpc.log"), logLevel="debug")
    run = zipapp.run(program, env(), json.dumps(conf))
    refused(run, 7)
    assert "cannot open log file" in run.stderr and "symbolic link" in run.stderr


def test_netns_that_is_a_regular_file(zipapp: Zipapp, root: Root) -> None:
    prev = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}],
            "ips": [{"address": "10.0.0.5/32", "interface": 0}]}
    conf = config("cnivpc-ipvlan", root, master="lo", prevResult=prev)
    doc = refused(zipapp.run("cnivpc-ipvlan", env(CNI_NETNS=str(root.canary)),
                             json.dumps(conf)), 4)
    assert "not a network namespace" in doc["msg"]


# -- the CLI ----------------------------------------------------------------------------------

def cli_refused(run: Run) -> None:
    assert run.returncode != 0, run
    assert "Traceback" not in run.stderr and "\x1b" not in run.stdout + run.stderr
    lines = run.stderr.splitlines()
    assert any(x.startswith("error: ") for x in lines), run.stderr
    assert any(x.startswith("hint: ") for x in lines), run.stderr


def test_cli_refuses_a_symlinked_data_dir(zipapp: Zipapp, root: Root) -> None:
    (root.state / "data").symlink_to(root.canary_dir)
    cli_refused(zipapp.run("cnivpc", args=("ipam", "allocations", "--data-dir",
                                           str(root.state / "data"))))


def test_cli_refuses_a_bad_conf(zipapp: Zipapp, root: Root) -> None:
    conf = root.state / "c.json"
    conf.write_text(json.dumps({"type": "cnivpc-ipam", "name": "n", "dataDir": "/x/" + ESC}))
    cli_refused(zipapp.run("cnivpc", args=("ipam", "allocations", "--conf", str(conf))))


def test_cli_allocations_escape_a_hostile_pod_name(zipapp: Zipapp, root: Root) -> None:
    # A store whose pod name came from a hostile CNI_ARGS (written as an older version
    # could have): made by the artifact's own IPAM (a DEL creates the store), then edited.
    data = root.state / "data"
    run = zipapp.run("cnivpc-ipam", env("DEL"), json.dumps(config("cnivpc-ipam", root)))
    assert run.returncode == 0, run
    with sqlite3.connect(data / "ipam.db") as db:
        db.execute("INSERT INTO ips(ip, eni_id, container_id, ifname, network, pod, "
                   "allocated_at) VALUES('10.0.0.5', 'eni-1', 'c0ffee', 'eth0', 'net', ?, 0)",
                   (f"default/{ESC}evil\x1b[2J\nforged",))
    out = zipapp.run("cnivpc", args=("ipam", "allocations", "--data-dir", str(data)))
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\\x1b[31mevil" in out.stdout
    assert "Traceback" not in out.stderr
