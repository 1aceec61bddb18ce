"""No shell anywhere: every subprocess vdc starts takes an argument list, so an image path,
a hostname or a name is always one argument, never shell syntax (checked in the source)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("app", "hypervisor", "metadata")
STARTERS = {"run", "Popen", "call", "check_call", "check_output"}
SHELLS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "spawnl")}


def calls() -> list[tuple[Path, ast.Call]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    found.append((path, node))
    return found


def dotted(node: ast.expr) -> tuple[str, ...]:
    if isinstance(node, ast.Attribute):
        return (*dotted(node.value), node.attr)
    if isinstance(node, ast.Name):
        return (node.id,)
    return ()


def test_no_call_asks_for_a_shell() -> None:
    offenders = []
    for path, call in calls():
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        name = dotted(call.func)
        if name[-2:] in SHELLS:
            offenders.append(f"{where} {'.'.join(name)}")
        for keyword in call.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                offenders.append(f"{where} shell=")
        if name[:1] == ("subprocess",) and name[-1] in STARTERS and call.args:
            first = call.args[0]
            if isinstance(first, ast.Constant | ast.JoinedStr | ast.BinOp):
                offenders.append(f"{where} a command string, not an argument list")
    assert offenders == []


def test_the_checker_sees_the_subprocess_calls_there_are() -> None:
    starters = [
        call
        for _, call in calls()
        if dotted(call.func)[:1] == ("subprocess",) and dotted(call.func)[-1] in STARTERS
    ]
    assert len(starters) >= 4  # qemu-img, dhcp_release, iptables, ...
