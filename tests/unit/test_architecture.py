"""The layout's rules (docs/architecture.md), checked on the source: which layer may import
which, no import circles, and files a newcomer can read in one sitting.

Every import counts, those inside functions too: a "lazy" import is still a dependency (the
CLI's old circle with its command modules hid in such imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "hypervisor", "metadata")
MAX_LINES = 400
DOMAINS = ("compute", "storage", "network", "images", "identity")
# Which domain may use which (never both ways); everything else goes through shared services.
DOMAIN_USES = {
    "compute": {"storage", "network"},
    "storage": set(),
    "network": set(),
    "images": {"identity", "storage"},  # an image's copies on hosts go with it
    "identity": {"network"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = sources()


def imports_of(module: str) -> set[str]:
    """The project modules `module` imports (a `from package import name` counts as the
    submodule when `name` is one)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {module: imports_of(module) for module in MODULES}


def domain_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["app", "services"] and len(parts) > 2 and parts[2] in DOMAINS:
        return parts[2]
    return None


def test_no_import_circles() -> None:
    """Tarjan's strongly connected components: a component of two or more is a circle.
    Package __init__ modules are left out: importing a submodule runs its package, which
    is not a dependency of the code's own making."""
    graph = {
        m: {d for d in deps if MODULES[d].name != "__init__.py"}
        for m, deps in GRAPH.items()
        if MODULES[m].name != "__init__.py"
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert circles == []


def test_hypervisor_imports_nothing_of_the_control_plane() -> None:
    offenders = {
        m: sorted(d for d in deps if d.startswith(("app", "metadata")))
        for m, deps in GRAPH.items()
        if m.startswith("hypervisor")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_metadata_reads_models_never_services() -> None:
    """The metadata listener serves guests: it must not pull in libvirt, jobs, placement.
    It may use app.metrics' kinds of path and buckets: app.metrics imports nothing of vdc."""
    allowed = ("app.models", "app.config", "app.ids", "app.errors", "app.db", "app.metrics")
    offenders = {
        m: sorted(d for d in deps if d.startswith("app.") and not d.startswith(allowed))
        for m, deps in GRAPH.items()
        if m.startswith("metadata")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_services_take_only_the_metadata_trees_pure_modules() -> None:
    """The metadata drive (compute/metadata_drive.py) holds what the service answers: it
    gathers the facts and renders the tree as the service does, and takes nothing else of
    the metadata app (no listener, tokens, caches or rate limits)."""
    pure = ("metadata.facts", "metadata.tree", "metadata.drive")
    offenders = {
        m: sorted(d for d in deps if d.startswith("metadata") and d not in pure)
        for m, deps in GRAPH.items()
        if m.startswith("app.services")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_metrics_module_imports_nothing_of_vdc() -> None:
    """app.metrics is a leaf: services, routes and the metadata service all report to it."""
    assert {d for d in GRAPH["app.metrics"] if d.startswith(PACKAGES)} == set()


def test_models_import_no_services() -> None:
    offenders = {
        m: sorted(d for d in deps if d.startswith(("app.services", "app.api", "app.web")))
        for m, deps in GRAPH.items()
        if m.startswith("app.models")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_web_ui_does_not_import_the_api() -> None:
    offenders = {
        m: sorted(d for d in deps if d.startswith("app.api"))
        for m, deps in GRAPH.items()
        if m.startswith("app.web")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_services_never_import_routes_pages_or_the_cli() -> None:
    offenders = {
        m: sorted(d for d in deps if d.startswith(("app.api", "app.web", "app.cli")))
        for m, deps in GRAPH.items()
        if m.startswith("app.services")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


@pytest.mark.parametrize("domain", DOMAINS)
def test_domains_use_only_the_domains_they_may(domain: str) -> None:
    used = {
        domain_of(dep)
        for module, deps in GRAPH.items()
        if domain_of(module) == domain
        for dep in deps
    } - {None, domain}
    assert used <= DOMAIN_USES[domain], f"{domain} imports {sorted(used - DOMAIN_USES[domain])}"


def test_shared_services_import_no_domain_except_the_doctor() -> None:
    """The shared pieces sit below the domains; only the doctor reads across all of them."""
    offenders = {
        m: sorted(d for d in deps if domain_of(d))
        for m, deps in GRAPH.items()
        if m.startswith("app.services.") and domain_of(m) is None and m != "app.services.doctor"
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_domain_rules_have_no_two_way_pair() -> None:
    pairs = {(a, b) for a, uses in DOMAIN_USES.items() for b in uses}
    assert {(b, a) for a, b in pairs} & pairs == set()


def test_no_file_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_rules_see_the_imports() -> None:
    """The checks above are only as good as the import reader: it must see a lazy import
    inside a function and a `from package import module`."""
    assert "app.services.compute.lifecycle" in GRAPH["app.worker"]
    assert "app.main" in GRAPH["app.cli.server"]  # imported inside a function
    assert "app.services.network.security_groups" in GRAPH["app.services.identity.accounts"]
