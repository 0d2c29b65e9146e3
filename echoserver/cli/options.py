"""Click options built from a config dataclass, so a default or a help text is written once.

A field of :class:`~echoserver.config.ServerConfig` (or of the clients' ``LoadSpec``) becomes
``--field-name``; its default is the field's default and its help is ``metadata["help"]``. The
rest of the metadata says what the field's annotation cannot: ``flags`` (short flags such as
``("-p",)``), ``metavar``, ``choices``, ``type`` (the name of a parameter type the command
supplies, such as ``"size"``), ``show_default``, ``cli_default`` (the default as it is spelled
on the command line, when that reads better than the value: ``"0"`` for a ``(0.0, 0.0)`` delay).
A field that users do not set (``init=False``, or ``"cli": False`` in its metadata) is no option. Everything else (the environment variable,
the click type of an ``int`` or a ``float``, a flag for a ``bool``) follows from the field.
Shared by ``echoserver`` and ``echo-load``; docs/contributing.md shows how to add an option.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import click

# The metadata keys a field may carry; anything else is a typo that would silently do nothing.
KEYS = frozenset({"help", "flags", "metavar", "choices", "type", "show_default", "cli_default", "cli"})


def config_options(
    cls: type,
    param_types: Mapping[str, click.ParamType] | None = None,
    exclude: Iterable[str] = (),
    help_values: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one click option per field of the dataclass ``cls``, in field order.

    ``param_types`` resolves the ``type`` names fields use; ``help_values`` fills ``{name}``
    placeholders in help texts (a list only the command knows, such as the backend names).
    """
    hints = typing.get_type_hints(cls)
    params = [
        _option(found, hints[found.name], param_types or {}, help_values or {})
        for found in dataclasses.fields(cls)
        if _is_option(found) and found.name not in set(exclude)
    ]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for decls, kwargs in reversed(params):
            function = click.option(*decls, **kwargs)(function)
        return function

    return decorate


def _is_option(found: dataclasses.Field) -> bool:
    """Every init field is an option unless its metadata says ``"cli": False`` (set by code, not by users)."""
    return found.init and found.metadata.get("cli", True)


def config_values(cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for ``cls`` among the parsed ``options``.

    An option left unset on the command line (``None`` where the field's default is
    something else) is left out, so the dataclass's own default applies.
    """
    values = {}
    for found in dataclasses.fields(cls):
        if found.name in options and not (options[found.name] is None and found.default is not None):
            values[found.name] = options[found.name]
    return values


def _option(
    found: dataclasses.Field, hint: Any, param_types: Mapping[str, click.ParamType], help_values: Mapping[str, str]
) -> tuple[list[str], dict[str, Any]]:
    meta = dict(found.metadata)
    unknown = set(meta) - KEYS
    if unknown:
        raise TypeError(f"{found.name}: unknown option metadata {sorted(unknown)}; known: {sorted(KEYS)}")
    if "help" not in meta:
        raise TypeError(f"{found.name}: a config field needs metadata={{'help': ...}} to become an option")
    name = "--" + found.name.replace("_", "-")
    default = found.default
    text = meta["help"]
    for key, value in help_values.items():
        text = text.replace("{" + key + "}", value)
    kwargs: dict[str, Any] = {"help": text, "show_envvar": True}
    if "metavar" in meta:
        kwargs["metavar"] = meta["metavar"]
    if "show_default" in meta:
        kwargs["show_default"] = meta["show_default"]
    base = _base_type(hint)
    if "type" in meta:
        kwargs["type"] = param_types[meta["type"]]
    elif "choices" in meta:
        kwargs["type"] = click.Choice(list(meta["choices"]))
        if default == "":  # "" means "not given"; Choice would reject it as a default
            default = None
    elif base is bool:
        kwargs["is_flag"] = True
    elif base is tuple and _variadic(hint):
        kwargs["multiple"] = True
    elif base in (int, float):
        kwargs["type"] = base
    kwargs["default"] = meta.get("cli_default", default)
    return [*meta.get("flags", ()), name, found.name], kwargs


def _base_type(hint: Any) -> Any:
    """``int`` for ``int`` and ``int | None``; ``tuple`` for ``tuple[str, ...]``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def _variadic(hint: Any) -> bool:
    return typing.get_args(hint)[-1:] == (Ellipsis,)
