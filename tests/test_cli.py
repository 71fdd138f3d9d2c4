"""The command line as a whole: every option documented, shared flags named and defaulted alike."""

from __future__ import annotations

import argparse

from latepool.cli import build_parser, iter_subparsers
from latepool.commands.common import MODEL_HELP, OVERRIDE_MODEL_HELP
from latepool.options import DEFAULT_CACHE_DIR


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings if not isinstance(a, argparse._HelpAction)}


def commands() -> dict[str, argparse.ArgumentParser]:
    return {p.prog.removeprefix("latepool "): p for p in iter_subparsers(build_parser())}


def test_every_option_of_every_command_has_a_help_line_with_its_default() -> None:
    parsers = commands()
    assert {"evaluate", "train", "index build", "search", "serve", "export"} <= set(parsers)
    undocumented = [
        f"{name} {option}"
        for name, parser in parsers.items()
        for option, action in options(parser).items()
        if not (action.help or "").strip()
    ]
    assert not undocumented
    help_text = parsers["train"].format_help()
    for shown in ("(default: 1-6)", "(default: 16)", "(default: 1e-05)", "(default: 3)", "(default: pylate)"):
        assert shown in help_text


def test_shared_flags_have_one_name_and_one_default() -> None:
    parsers = commands()
    for name in ("index export-qdrant", "search"):
        assert {"--url", "--qdrant-path", "--collection", "--qdrant-api-key"} <= set(options(parsers[name]))
    for name in ("evaluate", "train"):
        assert options(parsers[name])["--cache-dir"].default == DEFAULT_CACHE_DIR
    for name, parser in parsers.items():
        if "--model" in options(parser) and name != "train":  # train also takes plain transformers
            expected = OVERRIDE_MODEL_HELP if "--index" in options(parser) else MODEL_HELP
            assert options(parser)["--model"].help == expected, name
