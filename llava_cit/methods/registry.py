"""Methods by name; each method module registers itself in one line, and a method file of your own
(`method: path/to/my_method.py`, a file that calls `register(...)`) is loaded the same way. A name (or alias)
registered twice by different methods is an error (benchmarks.registry.Registry)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

from benchmarks.registry import DuplicateName, Registry
from llava_cit.methods.base import Method
from llava_cit.util.errors import UserError

METHODS: Registry[Method] = Registry("method")
# modules of the package that define no method
NOT_METHODS = {"adapter_loading", "base", "registry", "regularization", "settings", "task_similarity"}
_FILES: dict[Path, Method] = {}  # method files already run in this process, by resolved path


def register(method: Method, *aliases: str) -> Method:
    """Make `method` known by its name (and by each alias); a name another method holds is a one-line error."""
    try:
        return METHODS.add(method.name, method, *aliases)
    except DuplicateName as err:
        raise UserError(str(err)) from None


def _import_builtin() -> None:
    import llava_cit.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in NOT_METHODS:
            importlib.import_module(f"llava_cit.methods.{info.name}")


def known_methods() -> list[tuple[str, Method]]:
    """(name, method) for every registered name, aliases included, sorted."""
    _import_builtin()
    return sorted(METHODS.items())


def load_method_file(path: Path) -> Method:
    """Run a method file (once per process); it must register exactly one new method (returned)."""
    if not path.is_file():
        raise UserError(f"method file not found: {path}")
    if path.resolve() in _FILES:
        return _FILES[path.resolve()]
    before = set(METHODS.names())
    spec = importlib.util.spec_from_file_location(f"llava_cit_method_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    except Exception as err:
        raise UserError(f"{path}: the method file failed to load ({type(err).__name__}: {err})") from None
    added = {METHODS.get(name).name for name in set(METHODS.names()) - before}
    if len(added) != 1:
        raise UserError(f"{path}: a method file must register exactly one method (it registered {len(added)})")
    _FILES[path.resolve()] = METHODS.get(added.pop())
    return _FILES[path.resolve()]


def get_method(name: str, base_dir: Path | None = None) -> Method:
    _import_builtin()
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_absolute() and base_dir is not None and (base_dir / path).is_file():
            path = base_dir / path
        return load_method_file(path)
    if name not in METHODS:
        raise UserError(f"unknown method '{name}' (known: {', '.join(METHODS.names())}; or a method file path)")
    return METHODS.get(name)
