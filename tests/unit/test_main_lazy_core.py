"""The plugin process's pydantic_core (cnivpc.__main__._lazy_pydantic_core): the compiled
models validate and serialize without loading any of it (cni.pyvalidate; not even the
extension module), and pydantic imported afterwards in the same process still finds the whole
package (the real ``__init__`` runs on first use of any other name)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from cnivpc.__main__ import _lazy_pydantic_core
_lazy_pydantic_core()
seen = {"stand-in": sorted(m for m in sys.modules if m.startswith(("pydantic", "typing_ext")))}
from cnivpc.cni.models import Result
from cnivpc.plugins.ptp.config import PtpConf
r = Result.from_version({"cniVersion": "0.4.0", "ips": [{"version": "4",
                         "address": "10.0.0.5/24", "gateway": "10.0.0.1"}]}, "0.4.0")
seen["result"] = r.to_version("1.0.0")
try:
    PtpConf.model_validate({"name": "n", "hostInterface": "", "containerInterface": "eth1"})
except ValueError as exc:
    seen["error"] = [(e["loc"], e["msg"]) for e in exc.errors(include_url=False)]
seen["compiled"] = sorted(m for m in sys.modules if m.startswith(("pydantic", "typing_ext")))
import pydantic, pydantic_core
from cnivpc.plugins.ptp.model import PtpConf as Model
seen["version"] = pydantic_core.__version__
seen["model"] = Model(name="n", host_interface="eth0", container_interface="eth1").to_json()
seen["later"] = "pydantic_core.core_schema" in sys.modules
print(json.dumps(seen))
"""


def test_compiled_models_load_only_the_extension_and_pydantic_still_works() -> None:
    proc = subprocess.run([sys.executable, "-sE", "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, check=True)
    seen = json.loads(proc.stdout)
    assert seen["stand-in"] == ["pydantic_core"]  # nothing loaded yet
    assert seen["compiled"] == ["pydantic_core"]  # the stand-in, nothing loaded
    assert seen["result"] == {"cniVersion": "1.0.0", "ips": [
        {"address": "10.0.0.5/24", "gateway": "10.0.0.1"}]}
    assert seen["error"] == [[["hostInterface"], "Value error, must be specified"]]
    import pydantic_core

    assert seen["version"] == pydantic_core.__version__
    assert seen["model"]["hostInterface"] == "eth0" and seen["later"] is True
