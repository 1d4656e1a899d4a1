"""The storage interface every gallery backend implements (SQLite, PostgreSQL): rows in, rows out, one transaction each.

A store knows tables and transactions, nothing of search or enrollment policy. Names
arrive already normalised and vectors already unit float32; the store writes each
identity in one transaction (all its rows or none) and reports what is stored. Local
stores (SQLite) hand their rows to an in-process index; a server store (PostgreSQL)
also searches, returning candidate rows that the gallery checks and rescores itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Callable, Union

import numpy as np

from .records import IdentityInfo

SCHEMA_VERSION = 1
FORMAT_TAG = "btnet-edge-gallery"
# Decides, inside the write transaction, which new rows to keep given the identity's stored rows.
KeepRows = Callable[[np.ndarray], np.ndarray]
# row ids, identity ids, raw vectors (a list of bytes or arrays, or one 2-D array)
RowBlock = tuple[np.ndarray, np.ndarray, Union[list, np.ndarray]]


class GalleryStore(ABC):
    """Tables of one gallery: ``meta`` (format, schema, embedding size, model id, thresholds), identities,
    embeddings."""

    where: str  # how messages name this gallery (a path, or a URL without its password)
    searches_itself = False  # True: ``search`` runs in the server, there is no local index
    readonly = False

    @abstractmethod
    def open(self, embedding_size: int | None, create: bool, model_id: str | None) -> dict[str, str]:
        """Connect, create the schema when allowed and absent, and return the meta table."""

    @abstractmethod
    def meta(self) -> dict[str, str]:
        """The meta table as it is now."""

    @abstractmethod
    def write_identity(self, name: str, vectors: np.ndarray, resolutions: Sequence[int],
                       sources: Sequence[str | None], keep: KeepRows) -> tuple[int, int]:
        """In one transaction: create ``name`` if new, add the rows ``keep(stored rows)`` selects;
        returns (identity id, rows added)."""

    @abstractmethod
    def remove(self, name: str) -> bool: ...

    @abstractmethod
    def rename(self, old: str, new: str) -> None: ...

    @abstractmethod
    def set_meta(self, values: dict[str, str], clear_prefix: str | None = None) -> None:
        """Upsert meta rows in one transaction, first deleting keys under ``clear_prefix``."""

    @abstractmethod
    def identities(self) -> list[IdentityInfo]: ...

    @abstractmethod
    def names_of(self, identity_ids: Sequence[int]) -> dict[int, str]: ...

    @abstractmethod
    def identity_id(self, name: str) -> int | None: ...

    @abstractmethod
    def count_identities(self) -> int: ...

    # Local stores: what an in-process index needs to follow the file incrementally.
    def change_token(self) -> object:
        """A value that changes whenever anyone commits (SQLite's data_version)."""
        raise NotImplementedError

    def count_rows_upto(self, row_id: int) -> int:
        raise NotImplementedError

    def row(self, row_id: int) -> tuple[int, bytes] | None:
        raise NotImplementedError

    def rows_after(self, row_id: int) -> Iterator[RowBlock]:
        raise NotImplementedError

    # Server stores: candidates of a search run by the server.
    def search(self, probes: np.ndarray, candidates: int, exact: bool) -> list[RowBlock]:
        raise NotImplementedError

    def damaged_rows(self) -> list[tuple[int, int, str]]:
        """(row id, identity id, why) of stored rows that fail the checks (server stores check in SQL)."""
        raise NotImplementedError

    @abstractmethod
    def close(self) -> None: ...
