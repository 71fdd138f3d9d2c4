"""The command line as a whole: every option documented, shared flags named and defaulted alike."""

from __future__ import annotations

import argparse

from latepool.cli import build_parser, iter_subparsers, main
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


def test_a_model_that_is_neither_local_nor_on_the_hub_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # fail at once instead of retrying the network
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n')
    code = main(["pool", "--model", "no-such-org/no-such-model", "--corpus", str(corpus)])
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1
    assert "'no-such-org/no-such-model' is neither a local directory nor reachable on the Hugging Face hub" in error


def test_help_and_version_load_no_torch_and_no_model_code() -> None:
    import subprocess
    import sys

    script = (
        "import sys, latepool.cli\n"
        "latepool.cli.build_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'numba') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    version = subprocess.run([sys.executable, "-m", "latepool.cli", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("latepool ")


def test_cli_errors_are_one_line_naming_the_flag(tmp_path, capsys) -> None:
    long_query = "x" * 2001
    assert main(["search", "--index", str(tmp_path), "--query", long_query]) == 2
    assert "--max-query-chars 2000" in capsys.readouterr().err
    assert main(["search", "--index", str(tmp_path), "--query", "q", "-k", "0"]) == 2
    assert "-k must be >= 1, got 0" in capsys.readouterr().err
    assert main(["search", "--index", str(tmp_path), "--queries", str(tmp_path / "nope.jsonl"), "--output", "r"]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"latepool search: error: file not found: {tmp_path / 'nope.jsonl'}"
    try:
        main(["evaluate", "--model", "m", "--data", "d", "--output", "o", "--pool-factors", "0-3"])
    except SystemExit as exit_info:
        assert exit_info.code == 2
    assert "--pool-factors must list factors >= 1, got '0-3'" in capsys.readouterr().err
