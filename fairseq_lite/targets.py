"""Components given as Hydra `_target_` nodes instead of registry names.

    optimizer:
      _target_: torch.optim.AdamW
      lr: ${optimization.lr[0]}
      weight_decay: 0.01

is built with `hydra.utils.instantiate`, so `_args_`, `_partial_`, `_recursive_`, `_convert_` and
interpolation (relative ones too, `${..[0].out_features}`) mean what Hydra says; each component kind
adds what it must pass (an optimizer gets the model's parameters, a schedule the torch optimizer, a
model or criterion the task when it takes one: registry.Registry.build). Mistakes are one line, before
the run where they can be seen then: a `_target_` that does not import names the nearest importable
name; an argument the target does not take names the target and what it takes.
"""

import difflib
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from fairseq_lite.errors import ConfigError, key

TARGET_KEY = "_target_"
RESERVED_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")


def is_target(node: Any) -> bool:
    """Whether a config node is a `_target_` component (a mapping with a `_target_` key)."""
    if isinstance(node, DictConfig):
        return TARGET_KEY in node
    return isinstance(node, Mapping) and TARGET_KEY in node


def _lookup(path: str, where: str) -> tuple[Any, str, str]:
    """Hydra's lookup of a dotted name (the longest importable module prefix, then attributes), as
    (the object or None, the prefix that resolved, the nearest name to the first part that did not).
    A module that exists but fails while importing is that error, not a missing name."""
    parts = path.split(".")
    obj, depth = None, 0
    for depth in range(len(parts), 0, -1):
        module = ".".join(parts[:depth])
        try:
            obj = importlib.import_module(module)
            break
        except ModuleNotFoundError as e:
            if e.name is not None and not module.startswith(e.name):
                raise ConfigError(f"{key(where + '.' + TARGET_KEY)}={path}: importing {module} failed: {e}") from e
        except Exception as e:
            raise ConfigError(
                f"{key(where + '.' + TARGET_KEY)}={path}: importing {module} failed: {type(e).__name__}: {e}"
            ) from e
    if obj is None:
        names = sorted(set(sys.modules) | {m.name for m in pkgutil.iter_modules()})
        close = difflib.get_close_matches(parts[0], [n for n in names if "." not in n], n=1)
        return None, "", close[0] if close else ""
    for i in range(depth, len(parts)):
        if not hasattr(obj, parts[i]):
            names = [n for n in dir(obj) if not n.startswith("_")]
            if hasattr(obj, "__path__"):
                names += [m.name for m in pkgutil.iter_modules(obj.__path__)]
            close = difflib.get_close_matches(parts[i], names, n=1, cutoff=0.5)
            prefix = ".".join(parts[:i])
            return None, prefix, f"{prefix}.{close[0]}" if close else ""
        obj = getattr(obj, parts[i])
    return obj, path, path


def locate_target(path: Any, where: str) -> Any:
    """The object a `_target_` names, or a one-line ConfigError naming the nearest importable name
    (looked up here rather than by hydra.utils.get_object, which reports a failure over several lines
    on stderr before raising)."""
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{key(where + '.' + TARGET_KEY)} must be a dotted name like torch.optim.AdamW, got {path!r}")
    obj, found, nearest = _lookup(path, where)
    if found == path:
        return obj
    missing = path[len(found) :].lstrip(".").split(".")[0] if found else path.split(".")[0]
    where_missing = f" in {found}" if found else ""
    hint = f"; the nearest importable name is {nearest}" if nearest else ""
    raise ConfigError(f"{key(where + '.' + TARGET_KEY)}={path}: cannot import it (no '{missing}'{where_missing}){hint}")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node


def check_target(node: Any, where: str, passed: Sequence[str] = (), positional: int = 0) -> Any:
    """Check a `_target_` node (and, when recursive, the targets nested in it) before anything is built:
    every target imports and takes the arguments given. `passed`: keyword arguments the caller adds,
    `positional`: how many positional ones it passes. Returns the located top-level target."""
    values = _plain(node)
    target = locate_target(values.get(TARGET_KEY), where)
    kwargs = [k for k in values if k not in RESERVED_KEYS]
    args = values.get("_args_", [])
    if not isinstance(args, list):
        raise ConfigError(f"{key(where + '._args_')} must be a list of positional arguments, got {args!r}")
    n_args = positional or len(args)
    complete = not values.get("_partial_", False)  # a partial may leave arguments to its caller
    _check_signature(target, values[TARGET_KEY], n_args, [*kwargs, *passed], where, complete)
    if values.get("_recursive_", True):
        for k in kwargs:
            _check_nested(values[k], f"{where}.{k}")
        for i, arg in enumerate(args):
            _check_nested(arg, f"{where}._args_[{i}]")
    return target


def _check_nested(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        if TARGET_KEY in value:
            check_target(value, where)
        else:
            for k, v in value.items():
                _check_nested(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_nested(v, f"{where}[{i}]")


def _check_signature(target: Any, name: str, n_args: int, kwargs: Sequence[str], where: str, complete: bool) -> None:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # a builtin without a signature: Hydra will tell at the call
    bind = signature.bind if complete else signature.bind_partial
    try:
        bind(*([None] * n_args), **dict.fromkeys(kwargs))
    except TypeError as e:
        params = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
        bad = next((k for k in kwargs if k not in signature.parameters), None)
        if bad is not None and not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            raise ConfigError(
                f"{key(f'{where}.{bad}')}: {name} takes no argument '{bad}'{_close(bad, params)}; it takes: "
                f"{', '.join(params)}"
            ) from None
        raise ConfigError(f"{key(where)}: {name}{signature}: {e}") from None


def _close(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def accepts(target: Any, argument: str) -> bool:
    """Whether calling `target` can take keyword `argument` (named, or **kwargs)."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == argument or p.kind == p.VAR_KEYWORD for p in parameters)


def instantiate_target(node: Any, where: str, *args: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate(node, *args), then called with `kwargs`: objects such as the task reach the
    target as they are, never copied into a config. A failure is one line naming `where` and the target."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    def failed(e: Exception) -> ConfigError:
        lines = [line.strip() for line in str(e).splitlines() if line.strip() and not line.startswith("full_key")]
        return ConfigError(f"{key(where)}: " + " ".join(lines))

    try:
        factory = instantiate(node, *args, _partial_=True)  # nested targets are built here
    except InstantiationException as e:
        raise failed(e) from None
    try:
        return factory(**kwargs)
    except Exception as e:
        target = node[TARGET_KEY]
        raise ConfigError(f"{key(where)}: error in call to {target}: {type(e).__name__}: {e}".splitlines()[0]) from e
