"""The dispatcher (cnivpc.cni.skel) in-process, with injected env/stdin/stdout/stderr and a tiny
fake plugin: command handling, version gating, error JSON, prevResult, GC attachments, logging
and the multi-call entry's registry."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cnivpc import __version__, plugins
from cnivpc.cni import versions
from cnivpc.cni.errors import TryAgainLater
from cnivpc.cni.plugin import Plugin, Request
from cnivpc.cni.skel import Dispatcher
from cnivpc.cni.types import IPConfig, NetConf, Result

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c0ffee",
    "CNI_NETNS": "/var/run/netns/test",
    "CNI_IFNAME": "eth0",
}
RESULT = Result(ips=[IPConfig(address="10.1.2.3/32")])


@dataclass
class Fake:
    """A plugin whose handlers record their requests; ``fail`` makes every handler raise."""

    result: Result = field(default_factory=lambda: RESULT)
    fail: BaseException | None = None
    calls: list[tuple[str, Request[NetConf]]] = field(default_factory=list)

    def handler(self, name: str) -> Callable[[Request[NetConf]], Any]:
        def handle(req: Request[NetConf]) -> Any:
            self.calls.append((name, req))
            if self.fail is not None:
                raise self.fail
            return self.result if name == "add" else None
        return handle

    def plugin(self) -> Plugin[NetConf]:
        return Plugin(name="fake", conf_model=NetConf,
                      **{h: self.handler(h) for h in ("add", "delete", "check", "status", "gc")})


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.stdout)
        return doc


class Unreadable(io.BytesIO):
    def read(self, *args: Any) -> bytes:
        raise AssertionError("stdin must not be read")


def conf(**extra: Any) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "net", "type": "fake", **extra}).encode()


def invoke(load: Callable[[], Plugin[Any]] | Fake | None = None, stdin: bytes | io.BytesIO = b"",
           name: str = "cnivpc-fake", **env: str) -> Outcome:
    if isinstance(load, Fake):
        fake = load
        load = fake.plugin
    if load is None:
        def load() -> Plugin[Any]:
            raise AssertionError("the plugin must not be loaded")
    out, err = io.StringIO(), io.StringIO()
    dispatcher = Dispatcher(
        name=name, load=load, version="1.2.3", getenv={**ENV, **env}.get,
        stdin=stdin if isinstance(stdin, io.BytesIO) else io.BytesIO(stdin),
        stdout=out, stderr=err)
    code = dispatcher.run()
    return Outcome(code, out.getvalue(), err.getvalue())


def assert_error(outcome: Outcome, code: int) -> dict[str, Any]:
    """An error: exit 1, exactly one JSON document on stdout with that code, no traceback."""
    assert outcome.code == 1, outcome
    doc = outcome.doc
    assert doc["code"] == code, doc
    assert isinstance(doc["msg"], str) and doc["msg"]
    assert "Traceback" not in outcome.stdout
    return doc


# -- commands without a config ----------------------------------------------------------------

def test_no_command_prints_about_on_stderr_and_exits_0() -> None:
    out = invoke(CNI_COMMAND="")
    assert out.code == 0 and out.stdout == ""
    assert "cnivpc-fake" in out.stderr and "1.2.3" in out.stderr and "1.1.0" in out.stderr


def test_version_reads_no_stdin_and_loads_no_plugin() -> None:
    out = invoke(None, Unreadable(), CNI_COMMAND="VERSION")
    assert out.code == 0
    assert out.doc == {"cniVersion": "1.1.0",
                       "supportedVersions": list(versions.SUPPORTED_VERSIONS)}


def test_unknown_command_is_code_4() -> None:
    doc = assert_error(invoke(Fake(), conf(), CNI_COMMAND="FROB"), 4)
    assert "FROB" in doc["msg"]


def test_missing_env_is_one_code_4_error_before_stdin() -> None:
    out = invoke(None, Unreadable(), CNI_CONTAINERID="", CNI_IFNAME="", CNI_NETNS="")
    doc = assert_error(out, 4)
    for name in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"):
        assert name in doc["msg"]


# -- decoding and validation -------------------------------------------------------------------

@pytest.mark.parametrize("stdin", [b"", b"{", b"not json", b"[1, 2]", b'"str"', b"\xff\xfe{}",
                                   b'{"cniVersion": 1, "name": "n"}'])
def test_malformed_stdin_is_code_6(stdin: bytes) -> None:
    fake = Fake()
    assert_error(invoke(fake, stdin), 6)
    assert fake.calls == []


@pytest.mark.parametrize("name", [None, "", "-net", "my net", "net\n", 7, "a/b"])
def test_bad_network_name_is_code_7(name: Any) -> None:
    raw = {"cniVersion": "1.0.0", "type": "fake"}
    if name is not None:
        raw["name"] = name
    doc = assert_error(invoke(Fake(), json.dumps(raw).encode()), 7)
    assert "name" in doc["msg"]


def test_invalid_plugin_config_is_code_7_naming_the_key() -> None:
    doc = assert_error(invoke(Fake(), conf(logLevel=["not", "a", "string"])), 7)
    assert "logLevel" in doc["details"]
    assert "https://" not in doc["details"]  # pydantic's doc links stay out


def test_unknown_keys_are_kept() -> None:
    fake = Fake()
    assert invoke(fake, conf(somethingElse={"a": 1})).code == 0
    (_, req), = fake.calls
    assert req.raw_config["somethingElse"] == {"a": 1}
    assert req.conf.model_extra == {"somethingElse": {"a": 1}}


# -- versions ----------------------------------------------------------------------------------

def test_config_without_version_is_0_1_0() -> None:
    out = invoke(Fake(), json.dumps({"name": "net", "type": "fake"}).encode())
    assert out.code == 0
    assert out.doc == {"cniVersion": "0.1.0", "ip4": {"ip": "10.1.2.3/32"}}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1"])
def test_check_before_0_4_0_is_code_1(version: str) -> None:
    fake = Fake()
    doc = assert_error(invoke(fake, conf(cniVersion=version), CNI_COMMAND="CHECK"), 1)
    assert fake.calls == []
    assert "CHECK" in doc["msg"] and "0.4.0" in doc["details"]


@pytest.mark.parametrize("command", ["STATUS", "GC"])
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_status_and_gc_before_1_1_0_are_code_1(command: str, version: str) -> None:
    fake = Fake()
    doc = assert_error(invoke(fake, conf(cniVersion=version), CNI_COMMAND=command), 1)
    assert fake.calls == []
    assert command in doc["msg"]
    assert version in doc["details"] and "1.1.0" in doc["details"]


@pytest.mark.parametrize("command", ["STATUS", "GC"])
def test_status_and_gc_run_at_1_1_0(command: str) -> None:
    fake = Fake()
    out = invoke(fake, conf(cniVersion="1.1.0"), CNI_COMMAND=command)
    assert (out.code, out.stdout) == (0, "")
    assert [c for c, _ in fake.calls] == [command.lower()]


def test_unsupported_version_is_code_1() -> None:
    doc = assert_error(invoke(Fake(), conf(cniVersion="9.9.9")), 1)
    assert "9.9.9" in doc["details"]


@pytest.mark.parametrize("version", versions.SUPPORTED_VERSIONS)
def test_add_result_printed_in_config_version(version: str) -> None:
    out = invoke(Fake(), conf(cniVersion=version))
    assert out.code == 0
    assert out.doc["cniVersion"] == version
    if versions.at_least(version, "0.3.0"):
        ip = out.doc["ips"][0]
        assert ip["address"] == "10.1.2.3/32"
        assert ("version" in ip) == (not versions.at_least(version, "1.0.0"))
    else:
        assert out.doc["ip4"] == {"ip": "10.1.2.3/32"}


@pytest.mark.parametrize("command", ["DEL", "CHECK"])
def test_del_and_check_print_nothing(command: str) -> None:
    fake = Fake()
    out = invoke(fake, conf(), CNI_COMMAND=command)
    assert (out.code, out.stdout) == (0, "")
    assert [c for c, _ in fake.calls] == [{"DEL": "delete", "CHECK": "check"}[command]]


def test_del_without_netns() -> None:
    fake = Fake()
    out = invoke(fake, conf(), CNI_COMMAND="DEL", CNI_NETNS="")
    assert out.code == 0
    assert fake.calls[0][1].cmd.netns == ""


# -- output shape ------------------------------------------------------------------------------

def test_output_omits_empty_and_none_fields() -> None:
    fake = Fake(result=Result.model_validate({
        "interfaces": [{"name": "eth0"}], "ips": [{"address": "10.0.0.5/24"}]}))
    out = invoke(fake, conf(cniVersion="1.1.0"))
    assert out.doc == {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}],
                       "ips": [{"address": "10.0.0.5/24"}]}


def test_stdout_carries_exactly_one_json_document() -> None:
    out = invoke(Fake(), conf(), CNIVPC_LOG_LEVEL="debug")
    json.loads(out.stdout)  # raises if logging leaked onto stdout
    assert "ADD" in out.stderr


# -- prevResult --------------------------------------------------------------------------------

def test_prev_result_parsed_in_request_version() -> None:
    fake = Fake()
    prev = {"cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "0a:00:00:00:00:01", "sandbox": "/x"}],
            "ips": [{"version": "4", "address": "10.0.0.5/24", "gateway": "10.0.0.1",
                     "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}]}
    assert invoke(fake, conf(cniVersion="0.4.0", prevResult=prev)).code == 0
    (_, req), = fake.calls
    assert req.prev_result is not None
    assert req.prev_result.to_json() == {
        "interfaces": [{"name": "eth0", "mac": "0a:00:00:00:00:01", "sandbox": "/x"}],
        "ips": [{"address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}]}


def test_prev_result_absent_is_none() -> None:
    fake = Fake()
    invoke(fake, conf())
    assert fake.calls[0][1].prev_result is None


def test_invalid_prev_result_is_code_7() -> None:
    fake = Fake()
    doc = assert_error(invoke(fake, conf(prevResult={"ips": [{"address": "nope"}]})), 7)
    assert "prevResult" in doc["msg"]
    assert fake.calls == []


# -- GC ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_attachments(key: str) -> None:
    fake = Fake()
    attachments = [{"containerID": "a1", "ifname": "eth0"}, {"containerID": "b2", "ifname": "e1"}]
    out = invoke(fake, conf(cniVersion="1.1.0", **{key: attachments}), CNI_COMMAND="GC")
    assert out.code == 0
    (_, req), = fake.calls
    assert req.valid_attachments.given
    assert req.valid_attachments.require() == {("a1", "eth0"), ("b2", "e1")}


def test_gc_without_attachments_is_no_list_not_an_empty_one() -> None:
    # (The GC/DEL contract as a whole is in test_cni_gc_del_contract.py.)
    fake = Fake()
    assert invoke(fake, conf(cniVersion="1.1.0"), CNI_COMMAND="GC").code == 0
    assert not fake.calls[0][1].valid_attachments.given


@pytest.mark.parametrize("value", [{"containerID": "a"}, [{"ifname": "eth0"}], "a1"])
def test_gc_bad_attachments_are_code_7(value: Any) -> None:
    out = invoke(Fake(), conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": value}),
                 CNI_COMMAND="GC")
    assert_error(out, 7)


# -- the error boundary ------------------------------------------------------------------------

def test_cni_error_passes_through_with_details() -> None:
    fake = Fake(fail=TryAgainLater("ipam lock busy", "held by pid 7"))
    doc = assert_error(invoke(fake, conf(cniVersion="0.4.0")), 11)
    assert doc == {"cniVersion": "0.4.0", "code": 11, "msg": "ipam lock busy",
                   "details": "held by pid 7"}


def test_unexpected_exception_is_999_with_traceback_only_on_stderr() -> None:
    out = invoke(Fake(fail=KeyError("boom")), conf())
    doc = assert_error(out, 999)
    assert "KeyError" in doc["details"] and "boom" in doc["details"]
    assert "Traceback" in out.stderr


def test_plugin_that_fails_to_load_is_999() -> None:
    def load() -> Plugin[Any]:
        raise ImportError("no module named cnivpc.plugins.nothing")
    doc = assert_error(invoke(load, conf()), 999)
    assert "ImportError" in doc["details"]


def test_unreadable_stdin_is_code_5() -> None:
    class Broken(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            raise OSError(5, "Input/output error")
    assert_error(invoke(Fake(), Broken()), 5)


def test_stdout_gone_does_not_raise() -> None:
    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")
    dispatcher = Dispatcher(name="x", load=Fake().plugin, getenv=ENV.get,
                            stdin=io.BytesIO(conf()), stdout=Closed(), stderr=io.StringIO())
    assert dispatcher.run() == 0


# -- logging -----------------------------------------------------------------------------------

def test_log_file_from_config(tmp_path: Path) -> None:
    log = tmp_path / "sub" / "cnivpc.log"
    assert invoke(Fake(), conf(logFile=str(log))).code == 0
    text = log.read_text()
    assert "ADD" in text and "ok" in text and "c0ffee" in text
    assert log.stat().st_mode & 0o777 == 0o600


def test_log_file_from_env_gets_errors(tmp_path: Path) -> None:
    log = tmp_path / "cnivpc.log"
    assert_error(invoke(Fake(fail=KeyError("boom")), conf(), CNIVPC_LOG_FILE=str(log)), 999)
    assert "Traceback" in log.read_text()


def test_unwritable_log_file_does_not_fail_the_plugin(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = invoke(Fake(), conf(logFile=str(blocker / "x.log")))
    assert out.code == 0 and out.doc["ips"]
    assert "cannot open log file" in out.stderr


# -- the registry ----------------------------------------------------------------------------

def test_every_registered_plugin_answers_version() -> None:
    for program in plugins.PLUGINS:
        out = invoke(None, CNI_COMMAND="VERSION", name=program)
        assert out.code == 0 and out.doc["cniVersion"] == "1.1.0"
    assert __version__
