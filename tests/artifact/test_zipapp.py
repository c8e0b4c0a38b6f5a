"""The built zipapp as a black box: dispatch through the symlinks under ``env -i``, CNI JSON on
stdout for success and failure, what the archive contains, that two builds are byte-identical,
the trimmed botocore still makes an EC2 client, and which heavy modules each path imports."""

from __future__ import annotations

import ast
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from cnivpc import __version__, plugins
from tests.support.zipapp import IMPORTS_PROBE, PYTHON, REPO, Zipapp, build

pytestmark = pytest.mark.artifact

PROGRAMS = sorted(plugins.PLUGINS)
# pydantic-core's extension for 10 targets (CPython 3.10-3.14 x x86_64/aarch64) is ~2.2 MB each
# compressed: ~23 MB in all (build/multiabi.py; the README's table).
MAX_SIZE = 26 * 1024 * 1024
ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/var/run/netns/none",
           "CNI_IFNAME": "eth0"}


@pytest.mark.parametrize("program", PROGRAMS)
def test_version_through_each_symlink(zipapp: Zipapp, program: str) -> None:
    run = zipapp.run(program, {"CNI_COMMAND": "VERSION"})
    assert run.returncode == 0, run.stderr
    assert run.doc["cniVersion"] == "1.1.0"
    assert "1.1.0" in run.doc["supportedVersions"] and "0.3.1" in run.doc["supportedVersions"]


def test_no_command_prints_about(zipapp: Zipapp) -> None:
    run = zipapp.run("cnivpc-ptp")
    assert (run.returncode, run.stdout) == (0, "")
    assert f"CNI cnivpc-ptp plugin v{__version__}" in run.stderr


def test_cli_version(zipapp: Zipapp) -> None:
    run = zipapp.run("cnivpc", args=("--version",))
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"cnivpc {__version__}\n"


def test_cli_runs_a_plugin_by_name(zipapp: Zipapp) -> None:
    run = zipapp.run("cnivpc", {"CNI_COMMAND": "VERSION"}, args=("ptp",))
    assert run.returncode == 0 and run.doc["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("stdin", ["", "{not json", "[]"])
def test_malformed_stdin_is_code_6(zipapp: Zipapp, stdin: str) -> None:
    run = zipapp.run("cnivpc-ptp", ADD_ENV, stdin)
    assert run.returncode != 0
    assert run.doc["code"] == 6
    assert "Traceback" not in run.stdout


@pytest.mark.parametrize(("conf", "code"), [
    ({"cniVersion": "1.0.0", "name": "bad name", "type": "cnivpc-ptp"}, 7),
    ({"cniVersion": 1, "name": "net", "type": "cnivpc-ptp"}, 6),
    ({"cniVersion": "9.0.0", "name": "net", "type": "cnivpc-ptp"}, 1),
    # ptp needs hostInterface and containerInterface
    ({"cniVersion": "1.0.0", "name": "net", "type": "cnivpc-ptp"}, 7),
])
def test_bad_config(zipapp: Zipapp, conf: dict[str, object], code: int) -> None:
    run = zipapp.run("cnivpc-ptp", ADD_ENV, json.dumps(conf))
    assert run.returncode != 0
    assert run.doc["code"] == code, run.doc


def test_missing_env_is_code_4(zipapp: Zipapp) -> None:
    run = zipapp.run("cnivpc-ptp", {"CNI_COMMAND": "ADD"}, "{}")
    assert run.returncode != 0
    assert run.doc["code"] == 4
    assert "CNI_CONTAINERID" in run.doc["msg"]


@pytest.mark.parametrize(("program", "bad"), [
    ("cnivpc-ipam", {"interfaceIndex": -1}), ("cnivpc-ipvlan", {"mode": "l9"}),
    ("cnivpc-ptp", {"hostInterface": "eth0"})])
def test_every_plugin_answers_a_bad_config_with_code_7(zipapp: Zipapp, program: str,
                                                       bad: dict[str, object]) -> None:
    conf = {"cniVersion": "1.0.0", "name": "net", "type": program, **bad}
    run = zipapp.run(program, ADD_ENV, json.dumps(conf))
    assert run.returncode != 0
    assert run.doc["code"] == 7, run.doc


def test_baked_root_used_without_shiv_root(zipapp: Zipapp) -> None:
    run = zipapp.run("cnivpc", args=("--version",), shiv_root=False)
    assert run.returncode == 0, run.stderr
    assert list(zipapp.baked_root.glob("cnivpc_*/site-packages/cnivpc/__init__.py"))
    # --compile-pyc: the extraction ships its own bytecode
    assert list(zipapp.baked_root.glob("cnivpc_*/site-packages/cnivpc/__pycache__/*.pyc"))


def test_archive_contents(zipapp: Zipapp) -> None:
    assert zipapp.path.stat().st_size <= MAX_SIZE
    # The head is the sh launcher (it picks the node's interpreter), byte for byte but for
    # the build's words: its extraction root, build id and entry.
    with zipfile.ZipFile(zipapp.path) as zf:
        build_id = json.loads(zf.read("environment.json"))["build_id"]
    head = (REPO / "build" / "launcher.sh").read_text().replace("@ROOT@", str(zipapp.baked_root))
    head = head.replace("@BUILD_ID@", build_id).replace("@ENTRY@", "_cnivpc_entry.py")
    assert zipapp.path.read_bytes().startswith(head.encode())
    for program in PROGRAMS:
        link = zipapp.bin / program
        assert link.is_symlink() and str(link.readlink()) == "../cnivpc"
    with zipfile.ZipFile(zipapp.path) as zf:
        infos = zf.infolist()
        env = json.loads(zf.read("environment.json"))
    names = [i.filename for i in infos]
    assert env["entry_point"] == "cnivpc.__main__:main" and env["script"] is None
    assert env["root"] == str(zipapp.baked_root) and env["compile_pyc"] is True
    assert len({i.date_time for i in infos}) == 1
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert not [n for n in names if n.startswith("site-packages/cnivpc/lab/")]
    assert not [n for n in names if n.startswith("site-packages/bin/")]
    assert not [n for n in names if n.endswith("direct_url.json")]
    assert {i.external_attr >> 16 for i in infos} <= {0o100644, 0o100755, 0o600}
    site = [n for n in names if n.startswith("site-packages/")]
    assert site == sorted(site)
    boot = [n for n in names if n.startswith("_bootstrap/")]
    assert boot == sorted(boot) and "_bootstrap/__init__.py" in boot
    assert names[-2:] == ["environment.json", "__main__.py"]
    data = sorted(n.removeprefix("site-packages/botocore/data/") for n in names
                  if n.startswith("site-packages/botocore/data/"))
    assert data == ["_retry.json", "ec2/2016-11-15/endpoint-rule-set-1.json.gz",
                    "ec2/2016-11-15/paginators-1.json", "ec2/2016-11-15/service-2.json",
                    "endpoints.json", "partitions.json", "sdk-default-configuration.json"]
    # runtime dependencies only: no test or lab tooling
    tops = {n.split("/")[1] for n in site}
    for unwanted in ("moto", "pytest", "hypothesis", "shiv", "mypy", "ruff", "boto3"):
        assert not [t for t in tops if t == unwanted or t.startswith(unwanted + "-")], unwanted
    for wanted in ("cnivpc", "pydantic", "pydantic_core", "pyroute2", "botocore"):
        assert wanted in tops


def test_two_builds_are_byte_identical(zipapp: Zipapp, tmp_path: Path) -> None:
    again = build(zipapp.source, tmp_path, zipapp.baked_root)
    assert again.read_bytes() == zipapp.path.read_bytes()


SMOKE_EC2 = """
import sys
sys.path.insert(0, sys.argv[1])
import botocore, botocore.session
from botocore.stub import Stubber
assert botocore.__file__.startswith(sys.argv[1]), botocore.__file__
session = botocore.session.get_session()
ec2 = session.create_client("ec2", region_name="us-east-1",
                            aws_access_key_id="x", aws_secret_access_key="y")
print(ec2.meta.endpoint_url)
print(",".join(sorted(ec2.meta.service_model.operation_names)))
stub = Stubber(ec2)
stub.add_response("describe_network_interfaces",
                  {"NetworkInterfaces": [{"NetworkInterfaceId": "eni-1"}]},
                  {"NetworkInterfaceIds": ["eni-1"]})
with stub:
    reply = ec2.describe_network_interfaces(NetworkInterfaceIds=["eni-1"])
print(reply["NetworkInterfaces"][0]["NetworkInterfaceId"])
"""


def test_trimmed_botocore_makes_an_ec2_client(zipapp: Zipapp) -> None:
    site = zipapp.site_packages()
    proc = subprocess.run(["env", "-i", PYTHON, "-sSE", "-c", SMOKE_EC2, str(site)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    url, ops, eni = proc.stdout.split()
    assert url == "https://ec2.us-east-1.amazonaws.com"
    assert eni == "eni-1"
    trim = (REPO / "build" / "trim_botocore.py").read_text()
    for op in ops.split(","):
        assert f'"{op}"' in trim
    # Every operation build/trim_botocore.py lists, and only those.
    tree = ast.parse(trim)
    listed = next(ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "")
                  == "OPERATIONS")
    assert sorted(ops.split(",")) == sorted(listed)


def imported(zipapp: Zipapp, program: str, env: dict[str, str], stdin: str) -> tuple[str, set[str]]:
    full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SHIV_ROOT": str(zipapp.shiv_root), **env}
    proc = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in full.items()), PYTHON, "-sSE",
                           "-c", IMPORTS_PROBE, str(zipapp.bin / program)],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          cwd="/")  # -c puts the cwd first on sys.path: not the checkout's cnivpc
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES=")]
    assert lines, proc.stderr
    return proc.stdout, set(json.loads(lines[-1].removeprefix("MODULES=")))


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_version_imports_nothing_heavy(zipapp: Zipapp) -> None:
    stdout, modules = imported(zipapp, "cnivpc-ptp", {"CNI_COMMAND": "VERSION"}, "")
    assert json.loads(stdout)["cniVersion"] == "1.1.0"
    assert "cnivpc.cni.skel" in modules  # the dispatch really ran in this process
    # cnivpc.__main__'s stand-ins for pydantic's plugin loader and for pydantic_core's package
    # (loaded on first use) are names in sys.modules, not imports.
    modules.discard("pydantic.plugin._loader")
    modules.discard("pydantic_core")
    assert not tops(modules) & {"botocore", "pyroute2", "pydantic", "pydantic_core", "urllib3"}
    assert "cnivpc.plugins.ptp" not in modules


def test_ptp_path_does_not_import_botocore(zipapp: Zipapp) -> None:
    conf = {"cniVersion": "1.0.0", "name": "net", "type": "cnivpc-ptp", "hostInterface": "eth0"}
    stdout, modules = imported(zipapp, "cnivpc-ptp", ADD_ENV, json.dumps(conf))
    assert json.loads(stdout)["code"] == 7  # containerInterface is missing
    assert "cnivpc.plugins.ptp" in modules  # the plugin was loaded, its config validated:
    assert "cnivpc.cni.pyvalidate" in modules  # by the compiled model (cni.compiled),
    assert "pydantic" not in tops(modules)  # without pydantic's Python layer
    assert "pydantic_core._pydantic_core" not in modules  # nor pydantic_core's extension
    assert "pydantic_core.core_schema" not in modules  # nor its type hints
    assert "botocore" not in tops(modules)
    assert not [m for m in modules if m.startswith("cnivpc.aws")]
