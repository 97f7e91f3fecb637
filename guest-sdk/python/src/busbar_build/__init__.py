"""``busbar-py``: builds a Python busbar service into a WebAssembly component with
componentize-py, against the busbar WIT contract this package carries.

    busbar-py build sensor.py -o sensor.wasm

It picks the world from the source: ``stateful-service`` when the class handed to
``serve(...)`` derives from ``StatefulService`` (also through modules beside it), else
``service``. Nothing of the service runs on the build machine's
Python; componentize-py runs the module once, inside the component, while building it.
"""

import argparse
import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

#: The componentize-py this SDK is tested with (a dependency of the package).
COMPONENTIZE_PY = "0.25.0"

WIT_DIR = Path(__file__).resolve().parent / "wit"


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Attribute):
        return base.attr
    return getattr(base, "id", "")


def _find_module(name: str, search) -> "Path | None":
    for folder in search:
        for candidate in (Path(folder) / f"{name}.py", Path(folder) / name / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _stateful_classes(tree: ast.Module, search, seen) -> set:
    """Names bound in ``tree`` to classes that derive from ``StatefulService``, following
    ``from module import Class`` into modules found in ``search``."""
    known = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found = _find_module(node.module, search)
            if found is not None and found not in seen:
                seen.add(found)
                imported = _stateful_classes(
                    ast.parse(found.read_text(encoding="utf-8"), str(found)), search, seen
                )
                known |= {a.asname or a.name for a in node.names if a.name in imported}
        elif isinstance(node, ast.ClassDef):
            if any(_base_name(b) in known | {"StatefulService"} for b in node.bases):
                known.add(node.name)
    return known


def world_of(source: str, filename: str = "<service>", search=()) -> str:
    """``stateful-service`` when the class handed to ``serve(...)`` derives from
    ``StatefulService`` (directly, or through classes of this file or of modules imported
    from ``search``), else ``service``. Read from the source: nothing is run."""
    tree = ast.parse(source, filename)
    stateful = _stateful_classes(tree, search, set())
    served = [
        node.args[0].id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and _base_name(node.func) == "serve"
        and node.args
        and isinstance(node.args[0], ast.Name)
    ]
    if served:
        return "stateful-service" if any(name in stateful for name in served) else "service"
    return "stateful-service" if stateful else "service"


def sdk_dir() -> Path:
    """The folder holding the ``busbar`` package, found without importing it (it imports
    bindings that exist only inside the component)."""
    spec = importlib.util.find_spec("busbar")
    if spec is None or spec.origin is None:
        raise SystemExit("busbar-py: the `busbar` package is not installed beside busbar_build")
    return Path(spec.origin).resolve().parent.parent


def componentize_py() -> str:
    found = shutil.which("componentize-py")
    if found is None:
        raise SystemExit(
            "busbar-py: componentize-py is not on PATH; install it with "
            f"`pip install componentize-py=={COMPONENTIZE_PY}`"
        )
    return found


def build(app: Path, output: Path, world: str = "", paths=()) -> int:
    """Builds ``app`` (a .py file) into the component ``output``; returns the exit code."""
    if app.suffix != ".py" or not app.is_file():
        print(f"busbar-py: {app} is not a Python file", file=sys.stderr)
        return 2
    search = [app.resolve().parent, *paths]
    world = world or world_of(app.read_text(encoding="utf-8"), str(app), search)
    command = [
        componentize_py(),
        "-d", str(WIT_DIR),
        "-w", world,
        "componentize",
        "-p", str(app.resolve().parent),
        "-p", str(sdk_dir()),
    ]
    for p in paths:
        command += ["-p", str(p)]
    command += [app.stem, "-o", str(output)]
    print(f"busbar-py: {app} -> {output} (world {world})", file=sys.stderr)
    return subprocess.run(command).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="busbar-py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a service (.py) into a component (.wasm)")
    b.add_argument("app", type=Path, help="the service's file; it sets `WitWorld = serve(...)`")
    b.add_argument("-o", "--output", type=Path, help="the component (default: APP with .wasm)")
    b.add_argument("--world", choices=["service", "stateful-service"], default="",
                   help="override the world picked from the source")
    b.add_argument("-p", "--path", action="append", default=[], type=Path,
                   help="more folders to import modules from (repeatable)")
    sub.add_parser("wit", help="print the folder of the busbar WIT contract")
    args = parser.parse_args(argv)
    if args.command == "wit":
        print(WIT_DIR)
        return 0
    return build(args.app, args.output or args.app.with_suffix(".wasm"), args.world, args.path)
