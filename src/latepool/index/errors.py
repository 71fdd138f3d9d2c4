"""What the index answers to input it cannot take (the server maps these to 400, 404 and 409)."""

from __future__ import annotations


class IndexInputError(ValueError):
    """The caller's input is not acceptable (empty texts or queries, k < 1, wrong dimensions, ...)."""


class DocumentsExistError(IndexInputError):
    """Documents with these ids are already in the index (add them with ``replace=True``)."""


class DocumentsNotFoundError(IndexInputError):
    """Ids that are not in the index."""


def documents_exist(existing: list[str]) -> DocumentsExistError:
    """The error for adding documents whose ids are in the index (``existing``, in the order given)."""
    verb = "exists" if len(existing) == 1 else "exist"
    return DocumentsExistError(
        f"{count_of(len(existing), 'document')} already {verb} (first: {existing[0]!r}); "
        "add with replace (--replace) to overwrite"
    )


def count_of(number: int, noun: str) -> str:
    """``"1 id"``, ``"2 ids"``: a count with its noun in the right number.

    Example::

        >>> count_of(1, "document"), count_of(3, "document")
        ('1 document', '3 documents')
    """
    return f"{number} {noun}{'' if number == 1 else 's'}"
