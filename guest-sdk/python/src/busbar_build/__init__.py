"""``busbar-py``: builds a Python busbar service into a WebAssembly component with
componentize-py, against the busbar WIT contract this package carries.

    busbar-py build sensor.py -o sensor.wasm

It picks the world from the source: ``stateful-service`` when a class there subclasses
``StatefulService``, else ``service``. Nothing of the service runs on the build machine's
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


def world_of(source: str, filename: str = "<service>") -> str:
    """``stateful-service`` when a class in ``source`` subclasses ``StatefulService``
    (``busbar.StatefulService`` too), else ``service``."""
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
                if name == "StatefulService":
                    return "stateful-service"
    return "service"


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
    world = world or world_of(app.read_text(encoding="utf-8"), str(app))
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
