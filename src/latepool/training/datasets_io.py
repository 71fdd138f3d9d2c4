"""Reading and writing the mined and scored datasets (Hugging Face ``datasets`` on disk, or parquet)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from latepool.training.mining import MinedQuery
from latepool.training.teacher_scores import ScoredQuery


def save_rows(rows: list[MinedQuery] | list[ScoredQuery], output: Path) -> None:
    """Save rows with ``Dataset.save_to_disk`` (a directory), replacing what ``output`` held."""
    import shutil

    from datasets import Dataset

    if not rows:
        raise ValueError("nothing to save: no rows")
    temporary = output.with_name(output.name + ".saving")
    if temporary.exists():
        shutil.rmtree(temporary)
    Dataset.from_list([asdict(row) for row in rows]).save_to_disk(str(temporary))
    if output.exists():
        shutil.rmtree(output)
    temporary.rename(output)


def load_table(path: Path):
    """A dataset saved with ``save_to_disk``, or parquet files (a file, or a directory searched recursively).

    A local copy of a hub dataset such as stefan-jo/scifact-train-mined-reranker-scores (parquet
    under ``data/``) loads this way.
    """
    from datasets import load_dataset, load_from_disk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.is_dir() and (path / "state.json").is_file():
        return load_from_disk(str(path))
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{path}: neither a saved dataset (state.json) nor parquet files")
    return load_dataset("parquet", data_files=[str(f) for f in files], split="train")


def load_mined(path: Path) -> list[MinedQuery]:
    """Rows written by ``latepool mine``."""
    table = load_table(path)
    needed = {"query_id", "positive_ids", "hard_negative_ids", "random_negative_ids"}
    if not needed <= set(table.column_names):
        raise ValueError(f"{path}: mined dataset needs columns {sorted(needed)}, has {table.column_names}")
    return [MinedQuery(**{key: row[key] for key in needed}) for row in table]
