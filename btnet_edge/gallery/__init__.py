"""Galleries for 1:N identification: storage backends (SQLite, PostgreSQL), search indexes and enrollment.

- ``storage``: the interface every backend implements; ``sqlite_store`` (the embedded
  default, one file) and ``postgres_store`` (pgvector, one gallery shared by many nodes).
- ``index`` (exact), ``ann`` (approximate, FAISS sign codes) and ``local`` (the
  in-process index that follows a SQLite file incrementally).
- ``enrollment``: the face the user meant, from each photo, one transaction per person.
- ``gallery.Gallery``: the one class callers use: ``Gallery("people.db")`` or
  ``Gallery("postgresql://user@host/db")``.
"""

from .gallery import Gallery, is_server_url
from .records import DamagedRow, IdentityInfo, Match

__all__ = ["DamagedRow", "Gallery", "IdentityInfo", "Match", "is_server_url"]
