"""cni.logs: the plugins' own logging (not the stdlib's): logging's line format, the levels of
stderr and the log file, a traceback kept whole, untrusted text escaped, one write per line,
and what happens before ``setup`` and after ``close``."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnivpc.cni import logs

LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\d+) (\S+) ([A-Z]+) (.*)")


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    logs.close()
    yield
    logs.close()


def env(**values: str) -> dict[str, str]:
    return values


def test_stderr_takes_warnings_and_the_file_info(tmp_path: Path) -> None:
    err = io.StringIO()
    log = logs.setup(err, env().get).getChild("cnivpc-ptp")
    logs.add_file(str(tmp_path / "sub" / "cnivpc.log"), None)
    log.debug("not logged %s", 1)
    log.info("ADD %s ok in %.0f ms", "c1/eth0", 12.4)
    log.warning("careful: %r", "x")
    lines = (tmp_path / "sub" / "cnivpc.log").read_text().splitlines()
    assert len(lines) == 2
    pid, name, level, message = LINE.fullmatch(lines[0]).groups()  # type: ignore[union-attr]
    assert (int(pid), name, level, message) == (os.getpid(), "cnivpc.cnivpc-ptp", "INFO",
                                                "ADD c1/eth0 ok in 12 ms")
    assert lines[1].endswith(" WARNING careful: 'x'")
    [only] = err.getvalue().splitlines()
    assert LINE.fullmatch(only) and only.endswith("careful: 'x'")
    assert (tmp_path / "sub" / "cnivpc.log").stat().st_mode & 0o777 == 0o600
    assert log.isEnabledFor(logs.INFO) and not log.isEnabledFor(logs.DEBUG)


def test_levels_from_the_environment_and_the_config(tmp_path: Path) -> None:
    err = io.StringIO()
    path = tmp_path / "env.log"
    log = logs.setup(err, env(CNIVPC_LOG_FILE=str(path), CNIVPC_LOG_LEVEL="debug").get)
    log.debug("both")
    assert "DEBUG both" in err.getvalue() and "DEBUG both" in path.read_text()
    logs.add_file(str(tmp_path / "conf.log"), "error")
    log.warning("not in the error-level file")
    log.error("in every one")
    assert (tmp_path / "conf.log").read_text().count("\n") == 1
    assert logs._level("WARN", 0) == logs.WARNING and logs._level("bogus", 7) == 7


def test_tracebacks_are_kept_and_messages_escaped(tmp_path: Path) -> None:
    err = io.StringIO()
    log = logs.setup(err, env().get)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("pod %s failed", "a\nERROR forged\x1b[31m")
    text = err.getvalue()
    first, *rest = text.splitlines()
    assert first.endswith("pod a\\x0aERROR forged\\x1b[31m failed")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"
    log.error("a bad format %d", "not a number")  # the caller's bug is not a crash
    assert "a bad format %d ('not a number',)" in err.getvalue()


def test_one_write_per_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cnivpc.log"
    logs.setup(io.StringIO(), env().get)
    logs.add_file(str(path), "debug")
    writes: list[bytes] = []
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(data) or real(fd, data))
    logs.get("ipam").info("one %s", "line")
    assert len(writes) == 1 and writes[0].endswith(b" cnivpc.ipam INFO one line\n")
    assert logs.file_fds() and all(fd > 2 for fd in logs.file_fds())


def test_before_setup_and_after_close_warnings_go_bare_to_stderr(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = logs.get("cli")
    log.info("quiet")
    log.warning("cannot reach %s", "IMDS")
    assert capsys.readouterr().err == "cannot reach IMDS\n"
    logs.setup(io.StringIO(), env().get)
    logs.add_file(str(tmp_path / "x.log"), None)
    fds = logs.file_fds()
    logs.close()
    assert logs.file_fds() == set()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    log.error("after close")
    assert capsys.readouterr().err == "after close\n"


def test_a_log_file_that_cannot_be_opened_is_a_warning(tmp_path: Path) -> None:
    err = io.StringIO()
    logs.setup(err, env().get)
    (tmp_path / "target").write_text("")
    (tmp_path / "link.log").symlink_to(tmp_path / "target")
    logs.add_file(str(tmp_path / "link.log"), None)
    logs.add_file("relative.log", None)
    assert logs.file_fds() == set()
    out = err.getvalue()
    assert "cannot open log file" in out and "must be an absolute path" in out
