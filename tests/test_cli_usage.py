"""Usage errors of every `vlfuse` subcommand: the usual usage screen and exit code 2, never a traceback."""

import pytest
import typer.main

from vlfuse.cli import app


def _commands(command, path=()):
    """(path, required argument names) of every leaf command of the typer app."""
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield path, [p.name for p in command.params if p.required]


COMMANDS = list(_commands(typer.main.get_command(app)))


def assert_usage_error(proc, *expected: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text and len(text.splitlines()) <= 12, text
    assert "Usage: vlfuse" in text, text
    for piece in expected:
        assert piece in text, text


def test_every_command_is_covered():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"train", "evaluate", "predict", "ask", "caption", "index", "search", "zeroshot", "serve", "export",
            "compare", "list", "data show"} <= names  # fmt: skip


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_unknown_option_is_a_usage_error(cli, path):
    assert_usage_error(cli(*path, "--no-such-option"), "No such option", f"vlfuse {' '.join(path)}")


@pytest.mark.parametrize("path", [p for p, required in COMMANDS if required], ids=" ".join)
def test_missing_argument_is_a_usage_error(cli, path):
    assert_usage_error(cli(*path), "Missing argument")


def test_train_without_config_is_a_usage_error(cli):
    assert_usage_error(cli("train"), "give a CONFIG file or --resume RUN")


def test_unknown_command_is_a_usage_error(cli):
    assert_usage_error(cli("frobnicate"), "No such command 'frobnicate'")


def test_ask_without_question_is_a_usage_error(cli, tmp_path):
    assert_usage_error(cli("ask", "easy-vqa-bridge", tmp_path / "x.png"), "Missing argument 'question'")


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_top_k_is_validated(cli, tmp_path, value):
    assert_usage_error(cli("predict", tmp_path, "--text", "what?", "--top-k", value), "--top-k")


@pytest.mark.parametrize("value", ["abc", "0"])
def test_search_k_is_validated(cli, tmp_path, value):
    assert_usage_error(cli("search", tmp_path, tmp_path / "i.safetensors", "red", "-k", value), "--top-k")
