"""A face gallery for 1:N open-set identification, on SQLite (a file) or PostgreSQL (a server shared by many nodes).

``Gallery("people.db")`` or ``Gallery("postgresql://user@host/db")``: the same class,
the same guarantees. Vectors are stored L2-normalised float32, so a cosine is a dot
product. The gallery records its schema version, embedding size and the model that
made the embeddings (embeddings of another model cannot be compared: a mismatch is an
error). Every identity is written in one transaction, all its rows or none; stored
rows are checked before they are searched; names are stored in one canonical form.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import GalleryError
from .index import Ranked
from .records import (
    THRESHOLD_KEY,
    DamagedRow,
    IdentityInfo,
    Match,
    check_resolution,
    check_threshold,
    is_int,
    new_rows,
    normalise_name,
    per_row,
    row_problems,
    stored_thresholds,
    unit_rows,
)
from .storage import FORMAT_TAG, SCHEMA_VERSION, GalleryStore

log = logging.getLogger(__name__)

URL_SCHEMES = ("postgresql://", "postgres://")


def is_server_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def _store_for(target: str | Path, readonly: bool) -> GalleryStore:
    if is_server_url(target):
        from .postgres_store import PostgresStore

        return PostgresStore(str(target), readonly=readonly)
    from .sqlite_store import SqliteStore

    return SqliteStore(target, readonly=readonly)


class Gallery:
    """Enrolled identities and their embeddings; ``identify`` answers 1:N, open-set.

    An identity's score for a probe is the MAX cosine over that identity's embeddings:
    one good enrolment photo (e.g. at the probe's resolution) should be enough to match,
    and a mean would let poor photos drag a true match below the threshold.

    ``readonly=True`` opens without any write (a read-only folder, a full disk, a
    replica). ``index``: "exact", "ann" (approximate: docs/serving.md) or "auto" (exact
    below a measured size). A SQLite gallery keeps its matrix in memory and reloads it
    incrementally; a PostgreSQL gallery is searched by the server (pgvector).
    """

    def __init__(self, target: str | Path, embedding_size: int | None = None, create: bool = True,
                 model_id: str | None = None, matrix_dtype: str = "float32", readonly: bool = False,
                 index: str = "auto") -> None:
        if embedding_size is not None and not (is_int(embedding_size) and embedding_size > 0):
            raise GalleryError(f"embedding_size must be a positive int, got {embedding_size!r}")
        if model_id is not None and not (isinstance(model_id, str) and model_id):
            raise GalleryError(f"model_id must be a non-empty str (e.g. '<package>:<trunk sha256>'), got {model_id!r}")
        self._store = _store_for(target, readonly)
        self.where = self._store.where
        self.path = None if is_server_url(target) else Path(target)
        self.index_kind = index
        meta = self._store.open(embedding_size, create, model_id)
        try:
            self._check_meta(meta, embedding_size, model_id)
            self._local = None
            if not self._store.searches_itself:
                from .local import LocalIndex

                self._local = LocalIndex(self._store, self.embedding_size, matrix_dtype, index)
            else:
                self._store.configure_search(self.embedding_size, index)  # type: ignore[attr-defined]
        except BaseException:
            self._store.close()
            raise

    def _check_meta(self, meta: dict[str, str], embedding_size: int | None, model_id: str | None) -> None:
        if meta.get("format") != FORMAT_TAG or "schema_version" not in meta:
            raise GalleryError(f"{self.where} is not a btnet-edge gallery: its meta table has keys "
                               f"{sorted(meta)}; pass a new path or delete it")
        if meta["schema_version"] != str(SCHEMA_VERSION):
            raise GalleryError(f"{self.where}: gallery schema version {meta['schema_version']}, this btnet-edge reads "
                               f"version {SCHEMA_VERSION}; use a matching btnet-edge or re-enroll into a new path")
        size = meta.get("embedding_size", "")
        if not size.isdigit() or int(size) < 1:
            raise GalleryError(f"{self.where}: the gallery's embedding_size is {size!r}, not a positive number; the "
                               "file was edited by hand or damaged: re-enroll into a new gallery")
        self.embedding_size = int(size)
        self.model_id = meta.get("model_id")
        self.check_model(embedding_size, model_id)

    def check_model(self, embedding_size: int | None, model_id: str | None) -> None:
        """Refuse a model whose embeddings this gallery cannot compare (None: not checked)."""
        advice = "embeddings of different models cannot be compared: use another gallery or re-enroll"
        if embedding_size is not None and embedding_size != self.embedding_size:
            raise GalleryError(f"{self.where}: gallery holds {self.embedding_size}-d embeddings, the model gives "
                               f"{embedding_size}-d; {advice}")
        if model_id is not None and self.model_id is not None and model_id != self.model_id:
            from ..package.manifest import model_id_note

            raise GalleryError(f"{self.where}: gallery was enrolled with model {self.model_id!r}, not {model_id!r}; "
                               f"{advice}{model_id_note(self.model_id)}")
        if model_id is not None and self.model_id is None:
            log.warning("%s: gallery records no model id; cannot check it matches %s", self.where, model_id)

    @property
    def readonly(self) -> bool:
        return self._store.readonly

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Writes

    def enroll(self, name: str, embeddings: np.ndarray, resolutions: int | Sequence[int] = 112,
               sources: str | Sequence[str | None] | None = None) -> int:
        """Add embeddings (N, D) or (D,) to ``name`` (created if new); return how many were added.

        Near-copies (cosine >= 0.999) of the identity's stored embeddings, or of each
        other, are not stored again: enrolling the same photo twice adds nothing (logged).
        """
        canonical = normalise_name(name)
        vectors = unit_rows(embeddings, self.embedding_size, "embedding")
        n = len(vectors)
        res = per_row(resolutions, n, "resolutions (positive ints)", lambda r: is_int(r) and r > 0)
        src = per_row(sources, n, "sources (None or str)", lambda s: s is None or isinstance(s, str))
        if canonical != name:
            log.info("%s: identity name %r stored as %r", self.where, name, canonical)
        self._warn_near_duplicate_name(canonical)
        kept: list[np.ndarray] = []

        def keep(existing: np.ndarray) -> np.ndarray:
            mask = new_rows(existing, vectors)
            kept.append(mask)
            return mask

        _, added = self._store.write_identity(canonical, vectors, res, src, keep)
        skipped = n - added
        if skipped:
            copies = [s or f"embedding {i}" for i, (s, k) in enumerate(zip(src, kept[-1])) if not k]
            log.warning("%s: %d of %d embeddings for %r were already enrolled (the same photo again?) and were not "
                        "stored twice: %s", self.where, skipped, n, canonical, ", ".join(map(str, copies)))
        self._changed()
        log.debug("%s: enrolled %d embeddings for %r", self.where, added, canonical)
        return added

    def _warn_near_duplicate_name(self, canonical: str) -> None:
        """A new name that differs from an enrolled one only in case (a few exact lookups, no scan)."""
        if canonical in self:
            return
        variants = {canonical.lower(), canonical.upper(), canonical.title(), canonical.capitalize(),
                    canonical.casefold()} - {canonical}
        similar = sorted(v for v in variants if self._store.identity_id(v) is not None)
        if similar:
            log.warning("%s: enrolling %r as a new identity, but %s differ only in case: the same person?",
                        self.where, canonical, similar)

    def remove(self, name: str) -> bool:
        """Delete ``name`` and its embeddings; False if it was not enrolled."""
        removed = self._store.remove(normalise_name(name))
        self._changed()
        return removed

    def rename(self, old: str, new: str) -> None:
        self._store.rename(normalise_name(old), normalise_name(new))
        self._changed()

    def _changed(self) -> None:
        if self._local is not None:
            self._local.invalidate()

    # Thresholds

    def _stored_thresholds(self) -> tuple[float, dict[int, float]]:
        return stored_thresholds(self._store.meta(), self.where)

    @property
    def default_threshold(self) -> float:
        return self._stored_thresholds()[0]

    @property
    def thresholds(self) -> dict[int, float]:
        """Per probe branch resolution; a resolution not listed uses ``default_threshold``."""
        return self._stored_thresholds()[1]

    @thresholds.setter
    def thresholds(self, values: Mapping[int, float]) -> None:
        checked = {check_resolution(r): check_threshold(t) for r, t in values.items()}
        self._store.set_meta({f"{THRESHOLD_KEY}.{r}": repr(t) for r, t in checked.items()},
                             clear_prefix=THRESHOLD_KEY + ".")

    def set_threshold(self, value: float, resolution: int | None = None) -> None:
        """Set the threshold for probes of one branch resolution, or the default (None)."""
        key = THRESHOLD_KEY if resolution is None else f"{THRESHOLD_KEY}.{check_resolution(resolution)}"
        self._store.set_meta({key: repr(check_threshold(value))})

    # Search

    def identify(self, embeddings: np.ndarray, top_k: int = 1, threshold: float | None = None,
                 probe_resolutions: Sequence[int] | None = None) -> list[list[Match]]:
        """Best ``top_k`` identities per probe, best first, dropping scores below the threshold.

        An empty list means "unknown". ``threshold`` applies to every probe; when None, each
        probe uses ``thresholds[probe_resolutions[i]]``, else ``default_threshold``.
        """
        if not (is_int(top_k) and top_k > 0):
            raise GalleryError(f"top_k must be a positive int, got {top_k!r}")
        probes = unit_rows(embeddings, self.embedding_size, "probe")
        limits = self._probe_thresholds(len(probes), threshold, probe_resolutions)
        ranked = self._search(probes, top_k)
        chosen = [[(i, s) for i, s in zip(r.identity_ids, r.scores) if s >= limit] for r, limit in zip(ranked, limits)]
        names = self._store.names_of(sorted({i for row in chosen for i, _ in row}))
        return [[Match(names[i], s, i) for i, s in row if i in names] for row in chosen]

    def _search(self, probes: np.ndarray, top_k: int) -> list[Ranked]:
        if self._local is not None:
            return self._local.search(probes, top_k)
        from .ann import CANDIDATES

        blocks = self._store.search(probes, max(CANDIDATES, 16 * top_k), exact=self.index_kind == "exact")
        return [self._rescore(p, block, top_k) for p, block in zip(probes, blocks)]

    def _rescore(self, probe: np.ndarray, block, top_k: int) -> Ranked:
        """Server candidates, checked like loaded rows and scored here: a tampered row cannot score itself high."""
        row_ids, identity_ids, vectors = block
        if not len(row_ids):
            return Ranked((), ())
        vectors = np.asarray(vectors, np.float32).reshape(len(row_ids), -1)
        problems = row_problems(vectors)
        for row_id, owner, why in zip(row_ids, identity_ids, problems):
            if why is not None:
                log.warning("%s: embedding %d of identity %d %s; left out of the search: remove and re-enroll it",
                            self.where, row_id, owner, why)
        best: dict[int, float] = {}
        for owner, vector, why in zip(identity_ids.tolist(), vectors, problems):
            if why is None:
                score = float(vector @ probe)
                best[owner] = max(score, best.get(owner, -2.0))
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        return Ranked(tuple(i for i, _ in ranked), tuple(s for _, s in ranked))

    def _probe_thresholds(self, m: int, threshold: float | None, resolutions: Sequence[int] | None) -> list[float]:
        if threshold is not None:
            return [check_threshold(threshold)] * m
        default, per = self._stored_thresholds()
        if resolutions is None:
            return [default] * m
        if is_int(resolutions) or len(resolutions) != m:
            raise GalleryError(f"probe_resolutions must list one resolution per probe ({m}), got {resolutions!r}")
        return [per.get(check_resolution(r), default) for r in resolutions]

    # Listing

    def names(self) -> list[str]:
        return [i.name for i in self._store.identities()]

    def identities(self) -> list[IdentityInfo]:
        return self._store.identities()

    @property
    def damaged(self) -> list[DamagedRow]:
        """Stored embeddings that failed their check (left out of every search)."""
        if self._local is not None:
            self._local.refresh()
            return list(self._local.damaged)
        return [DamagedRow(r, i, why) for r, i, why in self._store.damaged_rows()]

    def __len__(self) -> int:
        return self._store.count_identities()

    def __contains__(self, name: object) -> bool:
        try:
            return isinstance(name, str) and self._store.identity_id(normalise_name(name)) is not None
        except GalleryError:
            return False

    # Figures the cache tests and bench-gallery read

    @property
    def cache_loads(self) -> int:
        return self._local.loads if self._local is not None else 0

    @property
    def rows_loaded(self) -> int:
        return self._local.rows_read if self._local is not None else 0

    def index_info(self) -> dict:
        """Which search answers now, how many rows it holds and its memory."""
        if self._local is None:
            return self._store.index_info()  # type: ignore[attr-defined]
        self._local.refresh()
        return {"kind": self._local.active_kind, "rows": self._local.exact.rows, "memory_bytes": self._local.nbytes,
                "matrix_bytes": self._local.exact._matrix.nbytes}
