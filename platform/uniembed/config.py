"""Typed job configs: dataclasses that validate themselves, loaded from YAML with dotted
command-line overrides (``--set train.lr=1e-4`` or a bare ``train.lr=1e-4``, before, between
or after the named flags). ``--help`` lists every key with the value the job would run with
(the YAML's over the defaults) and the allowed values of every choice.

Every job declares one top-level dataclass. ``parse_config`` builds it from, in order of
precedence: dotted overrides > named flags (``--input``) > ``--config`` YAML > defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from uniembed.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config value is missing, of the wrong type or out of range; the message names it
    (a user error: the job prints it as one line and exits 2)."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise ConfigError naming ``where``."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where}: must not be null")
    if inner is Any:
        return value
    if _is_dataclass_type(inner):
        if isinstance(value, inner):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {inner.__name__}, got {value!r}")
        return from_dict(inner, value, prefix=where)
    origin = typing.get_origin(inner)
    if origin in (list, Sequence, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(inner) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        allowed = typing.get_args(inner)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as e:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from e
    if inner is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from e
    if inner is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys are errors (typos must not pass)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(where + u for u in unknown)}; "
            f"{cls.__name__} has: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name in names & set(data):
        where = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(data[name], hints[name], where)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from e


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-serialisable data."""
    return dataclasses.asdict(cfg)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {p} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides; values are parsed as YAML (``1e-4``, ``[a, b]``, ``null``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML; quote it") from e
        _set_dotted(data, key.strip(), value)
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config (local path or storage URI); an empty file is an empty mapping."""
    from uniembed import storage

    if not storage.exists(str(path)):
        raise ConfigError(f"config {path} does not exist; check --config")
    text = storage.read_text(str(path))
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"config {path}{line}: not valid YAML ({problem}); fix the file") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping")
    return data


def _choices(tp: Any, f: dataclasses.Field[Any]) -> list[Any] | None:
    if "choices" in f.metadata:
        return list(f.metadata["choices"])
    inner, _ = _unwrap_optional(tp)
    if typing.get_origin(inner) is typing.Literal:
        return list(typing.get_args(inner))
    if inner is bool:
        return [True, False]
    return None


def _field_help(
    cls: type, prefix: str = "", values: Mapping[str, Any] | None = None, source: str = ""
) -> list[str]:
    """One line per leaf key: its effective default (the YAML's value when ``values`` has
    it, marked with ``source``; else the dataclass default), allowed values and help."""
    lines = []
    hints = typing.get_type_hints(cls)
    values = values if isinstance(values, Mapping) else {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        inner, _ = _unwrap_optional(hints[f.name])
        if _is_dataclass_type(inner):
            lines.extend(_field_help(inner, name + ".", values.get(f.name), source))
            continue
        origin = ""
        if f.name in values:
            default, origin = repr(values[f.name]), f"  [{source}]"
        elif f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        choices = _choices(hints[f.name], f)
        allowed = f"  one of: {', '.join(map(str, choices))}" if choices else ""
        desc = f.metadata.get("help", "")
        lines.append(f"  {name} = {default}{origin}{allowed}  {desc}".rstrip())
    return lines


def config_help(cls: type, config: str | Path | None) -> str:
    """The epilog of ``--help``: every key with the value the job would run with under
    ``config`` (its YAML's values over the defaults) and the allowed values of choices."""
    values: dict[str, Any] = {}
    note = "defaults"
    if config:
        try:
            values = load_yaml(config)
            note = f"values of {config} over the defaults; [{Path(str(config)).name}] marks its own"
        except Exception as e:  # noqa: BLE001 - help must print whatever the config holds
            note = f"defaults ({config} could not be read: {e})"
    head = (
        "config keys (override any with key.path=value anywhere on the command line, or "
        f"--set key.path=value); {note}:"
    )
    return "\n".join([head, *_field_help(cls, values=values, source=Path(str(config)).name)])


def parse_config(
    cls: type[T],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    default_config: str | Path | None = None,
    flags: Mapping[str, str] | None = None,
) -> T:
    """Parse a job's command line into config ``cls``.

    ``flags`` maps convenience flags to dotted keys, e.g. ``{"input": "input"}`` gives
    ``--input URI``; a flag whose key is a list may be repeated.
    """
    flags = dict(flags or {})
    hints_cache: dict[str, Any] = {}
    argv = list(argv) if argv is not None else sys.argv[1:]
    epilog = None
    if "-h" in argv or "--help" in argv:  # only then read the config twice
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config", default=str(default_config) if default_config else None)
        known, _ = pre.parse_known_args(argv)
        epilog = config_help(cls, known.config)
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog,
    )
    parser.add_argument(
        "--config",
        default=str(default_config) if default_config else None,
        help=f"YAML config (default: {default_config or 'none'})",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the traceback of a user error (else one line, exit code 2; "
        "the traceback goes to the log file that line names)",
    )
    for flag, key in flags.items():
        if _key_type(cls, key, hints_cache) is bool:  # a switch: --overwrite sets it true
            parser.add_argument(
                f"--{flag.replace('_', '-')}",
                dest=f"flag__{flag}",
                action="store_const",
                const=True,
                help=f"sets {key}=true",
            )
            continue
        is_list = _key_is_list(cls, key, hints_cache)
        parser.add_argument(
            f"--{flag.replace('_', '-')}",
            dest=f"flag__{flag}",
            action="append" if is_list else "store",
            metavar=key.split(".")[-1].upper(),
            help=f"sets {key}",
        )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    # Intermixed: ``key=value`` overrides may come before, between and after named flags.
    args = parser.parse_intermixed_args(argv)
    data = load_yaml(args.config) if args.config else {}
    flag_overrides = {}
    for flag, key in flags.items():
        value = getattr(args, f"flag__{flag}")
        if value is not None:
            flag_overrides[key] = value
    for key, value in flag_overrides.items():
        _set_dotted(data, key, value)
    data = apply_overrides(data, [*args.set, *args.overrides])
    return from_dict(cls, data)


def _key_type(cls: type, key: str, cache: dict[str, Any]) -> Any:
    tp: Any = cls
    for part in key.split("."):
        inner, _ = _unwrap_optional(tp)
        if not _is_dataclass_type(inner):
            return None
        tp = typing.get_type_hints(inner)[part]
    return _unwrap_optional(tp)[0]


def _key_is_list(cls: type, key: str, cache: dict[str, Any]) -> bool:
    return typing.get_origin(_key_type(cls, key, cache)) in (list, tuple, Sequence)


def require(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``cond``: for ``__post_init__`` validation."""
    if not cond:
        raise ConfigError(message)
