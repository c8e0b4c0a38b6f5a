"""Every command's help says what its parser does: each subcommand a help text lists exists and
each one the parser has is listed; each ``--option`` a help text names is an option of that
command; the systemd units, the DaemonSet and the README run and name only real commands.
No lab, no root: parsers and help texts only."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from pathlib import Path

import pytest

from cnivpc.cli import COMMANDS, main
from cnivpc.cli import ipam as ipam_cli

REPO = Path(__file__).resolve().parents[2]
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]+)")
# Flags of other programs a help text may name (kubelet's)
FOREIGN = {"--max-pods", "--node-ip"}


def help_of(*argv: str) -> str:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(out):
        main([*argv, "--help"], out=out)  # argparse prints --help to sys.stdout
    assert exited.value.code == 0
    return out.getvalue()


def listed(text: str, section_start: str) -> list[str]:
    """The command names a help text lists: two-space-indented first words after a heading."""
    names: list[str] = []
    body = text.split(section_start, 1)[1]
    for line in body.splitlines():
        m = re.match(r"^  ([a-z][a-z0-9-]*)(?:\s|$)", line)
        if m:
            names.append(m.group(1))
    return names


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def test_top_level_help_lists_exactly_the_commands() -> None:
    out = io.StringIO()
    assert main(["help"], out=out) == 0
    text = out.getvalue()
    shown = listed(text, "Commands:\n")
    assert shown == list(COMMANDS)
    for module, _ in COMMANDS.values():
        if module:
            __import__(module)  # every listed command has its module


def test_ipam_help_lists_exactly_its_subcommands() -> None:
    """Was: 'cnivpc ipam --help' listed 'trim', which did not exist."""
    text = help_of("ipam")
    shown = [n for n in listed(text, "Read-only") if n not in ("positional", "options")]
    assert set(shown) == subcommands(ipam_cli.parser()) == set(ipam_cli.COMMANDS)
    assert "trim" not in text


@pytest.mark.parametrize("name", sorted(ipam_cli.COMMANDS))
def test_ipam_subcommand_help_names_only_its_options(name: str) -> None:
    sub = ipam_cli.parser()._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]
    command = ipam_cli.COMMANDS[name]
    named = set(OPTION.findall(command.args + " " + command.summary))
    assert named <= options(sub), f"{name} --help names {named - options(sub)}"
    assert "usage:" in help_of("ipam", name)


@pytest.mark.parametrize("name", ["status", "doctor", "gc", "max-pods", "install"])
def test_command_help_names_only_its_options(name: str) -> None:
    text = help_of(name)
    usage, _, rest = text.partition("\n\n")
    module = __import__(COMMANDS[name][0], fromlist=["main"])
    parser_options = set(OPTION.findall(usage)) | set(OPTION.findall(
        rest.split("options:", 1)[1] if "options:" in rest else ""))
    described = set(OPTION.findall(module.__doc__ or "")) - FOREIGN
    assert described <= parser_options, f"{name}'s help names {described - parser_options}"


def cnivpc_commands_in(text: str) -> list[list[str]]:
    """Every ``cnivpc <command> [<subcommand>]`` a text runs or names."""
    found = []
    for m in re.finditer(r"(?:^|[\s`/($])cnivpc ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", text):
        found.append(m.group(1).split())
    return found


def exists(argv: list[str]) -> bool:
    if argv[0] not in COMMANDS and argv[0] not in ("ipvlan", "ptp"):
        return False
    if argv[0] == "ipam" and len(argv) > 1 and argv[1] not in ("is", "with", "enis"):
        return argv[1] in ipam_cli.COMMANDS or argv[1] in ("ipam",)
    return True


@pytest.mark.parametrize("path", ["README.md", "examples/systemd/cnivpc-gc.service",
                                  "examples/systemd/cnivpc-warm.service",
                                  "examples/kubernetes/daemonset.yaml", "examples/ami-bake.sh"])
def test_docs_name_only_real_commands(path: str) -> None:
    text = (REPO / path).read_text()
    named = [argv for argv in cnivpc_commands_in(text)
             if argv[0] in COMMANDS or argv[0] == "ipam"]
    wrong = [" ".join(a) for a in named if not exists(a)]
    if path == "README.md":
        assert len(named) >= 10  # the scan sees the README's commands at all
    assert not wrong, f"{path} names commands that do not exist: {wrong}"


def test_gc_unit_says_what_gc_does() -> None:
    """Was: cnivpc-gc.service claimed gc unassigns long-free IPs, which it did not do."""
    from cnivpc.cli import gc

    unit = (REPO / "examples/systemd/cnivpc-gc.service").read_text()
    doc = gc.__doc__ or ""
    assert "freeIPMaxAge" in unit and "freeIPMaxAge" in doc
    assert "leaked ENIs" in unit and "namespace is gone" in doc
