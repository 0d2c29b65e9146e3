"""Every option is a config field: its default, help and environment variable come from there."""

from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner

from echoclients.load.cli import command as load_command
from echoclients.load.spec import LoadSpec
from echoserver.backends import REGISTRY
from echoserver.cli.command import command as server_command
from echoserver.cli.options import config_options, config_values
from echoserver.config import ServerConfig, option


@pytest.mark.parametrize(
    "command, config", [(server_command, ServerConfig), (load_command, LoadSpec)], ids=["echoserver", "echo-load"]
)
def test_every_config_field_is_an_option_with_its_default_and_help(command, config) -> None:
    params = {param.name: param for param in command.params}
    for found in dataclasses.fields(config):
        if not found.metadata.get("cli", True):
            continue
        param = params[found.name]
        assert isinstance(param, click.Option)
        assert f"--{found.name.replace('_', '-')}" in param.opts
        assert param.help == found.metadata["help"].replace("{backends}", ", ".join(REGISTRY))
        # What click hands back for the default is what the config would have used anyway.
        context = command.make_context("x", [], resilient_parsing=True)
        value = (
            param.type_cast_value(context, param.get_default(context))
            if param.get_default(context) is not None
            else None
        )
        assert config_values(config, {found.name: value}).get(found.name, found.default) == found.default


def test_the_backend_help_lists_the_registry() -> None:
    backend = next(param for param in server_command.params if param.name == "backend")
    assert ", ".join(REGISTRY) in backend.help


def test_a_field_without_help_is_refused_when_the_command_is_built() -> None:
    @dataclasses.dataclass(frozen=True)
    class Careless:
        size: int = dataclasses.field(default=1)

    with pytest.raises(TypeError, match="size: .*help"):
        config_options(Careless)


def test_a_misspelt_metadata_key_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Misspelt:
        size: int = option(1, "Bytes.", metavarr="N")

    with pytest.raises(TypeError, match="metavarr"):
        config_options(Misspelt)


def test_a_plain_field_with_help_metadata_becomes_an_option() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:
        count: int = dataclasses.field(default=3, metadata={"help": "How many."})
        name: str | None = option(None, "A name.", flags=("-n",))
        loud: bool = option(False, "Shout.")
        tags: tuple[str, ...] = option((), "Repeatable.")
        internal: int = dataclasses.field(default=0, metadata={"cli": False})  # set by code only

    seen = []

    @click.command()
    @config_options(Plain)
    def show(**options: object) -> None:
        seen.append(Plain(**config_values(Plain, options)))

    args = ["--count", "5", "-n", "x", "--loud", "--tags", "a", "--tags", "b"]
    assert CliRunner().invoke(show, args).exit_code == 0
    assert CliRunner().invoke(show, []).exit_code == 0
    assert seen == [Plain(count=5, name="x", loud=True, tags=("a", "b")), Plain()]
    assert CliRunner().invoke(show, ["--internal", "1"]).exit_code == 2  # no such option
