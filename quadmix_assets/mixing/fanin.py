"""The fan-in interface: what a mixture computes over every shard's features (its scores card's sums, its
manifest), behind one protocol with two engines.

* :class:`InMemoryFanIn` (``numpy``): every shard's features held as one table
  (:func:`~quadmix_assets.mixing.features.document_features`), each mixture computed with
  :mod:`~quadmix_assets.mixing.scores` (the numpy method library);
* :class:`OutOfCoreFanIn` (``duckdb``): the features read a chunk of a shard at a time and ranked with
  DuckDB's external sort under its memory limit (:mod:`~quadmix_assets.mixing.fanin_duckdb`).

Both give the same manifests (bit for bit) and cards (the same counts, the expected tokens to the last
bits). :func:`open_fan_in` chooses by size: in memory up to ``QUADMIX_FANIN_IN_MEMORY_ROWS`` documents
(:func:`quadmix_assets.settings.fanin_in_memory_rows`, default 5,000,000), out of core above; ``engine``
names one. The mixture assets use it; :func:`mixture_scores` is the per-document table of one stored
mixture (the data view and ``quadmix show``, always in memory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

from quadmix_assets.method import draw_copies
from quadmix_assets.settings import fanin_in_memory_rows
from quadmix_assets.storage import StorageRoot
from quadmix_assets.storage.duck import duck_session

from .fanin_duckdb import manifest_out_of_core, summary_out_of_core
from .features import KeepMask, document_features, documents_count
from .scores import manifest_table, score_documents, scores_summary
from .specs import MixtureSpec
from .store import load_spec, scores_card

__all__ = ["ENGINES", "FanIn", "InMemoryFanIn", "OutOfCoreFanIn", "Selection", "choose_engine", "mixture_scores",
           "open_fan_in"]

#: the engines :func:`open_fan_in` knows, by name
ENGINES = ("numpy", "duckdb")


@dataclass(frozen=True)
class Selection:
    """A mixture's drawn selection: its manifest, and where the engine held them (in memory), every
    document's scores (:data:`~quadmix_assets.mixing.scores.SCORE_COLUMNS`) and copies."""

    manifest: pa.Table
    scores: pa.Table | None = None
    copies: np.ndarray | None = None


class FanIn(Protocol):
    """A fan-in over one set of shards; ``label`` names the engine (the assets' ``engine`` metadata)."""

    label: str

    def summary(self, spec: MixtureSpec, n_domains: int) -> dict:
        """The sums a mixture's scores card keeps (:func:`~quadmix_assets.mixing.scores.scores_summary`)."""
        ...

    def select(self, spec: MixtureSpec, seed: int | str) -> Selection:
        """The mixture's manifest with the copies drawn with ``seed``."""
        ...


class InMemoryFanIn:
    """The numpy engine: every shard's features read once, held as one table."""

    label = "numpy (in memory)"

    def __init__(self, storage: StorageRoot, shards: Sequence[str], criteria: Sequence[str]):
        self.storage = storage
        self.criteria = tuple(criteria)
        self.features = document_features(storage, list(shards), self.criteria)

    def scores(self, spec: MixtureSpec) -> pa.Table:
        scores = score_documents(self.features, spec, self.criteria)
        if spec.keep:  # documents the keep rule refuses are never selected: S = 0
            ok = KeepMask(self.storage, spec.keep).table(scores["shard"].to_numpy(zero_copy_only=False),
                                                         scores["row"].to_numpy())
            i = scores.schema.get_field_index("expected")
            scores = scores.set_column(i, "expected", pa.array(np.where(ok, scores["expected"].to_numpy(), 0.0), pa.float64()))
        return scores

    def summary(self, spec: MixtureSpec, n_domains: int) -> dict:
        return scores_summary(self.scores(spec), n_domains)

    def select(self, spec: MixtureSpec, seed: int | str) -> Selection:
        scores = self.scores(spec)
        copies = draw_copies(scores["expected"].to_numpy(), scores["id_hash"].to_numpy(), seed)
        return Selection(manifest_table(scores, copies), scores, copies)


class OutOfCoreFanIn:
    """The DuckDB engine: one external sort per mixture, a batch and a chunk of a shard in memory; no
    per-document table (:attr:`Selection.scores` is ``None``)."""

    label = "duckdb (out of core)"

    def __init__(self, con, storage: StorageRoot, shards: Sequence[str], criteria: Sequence[str]):
        self.con, self.storage, self.shards, self.criteria = con, storage, list(shards), tuple(criteria)

    def summary(self, spec: MixtureSpec, n_domains: int) -> dict:
        return summary_out_of_core(self.con, self.storage, self.shards, spec, self.criteria, n_domains)

    def select(self, spec: MixtureSpec, seed: int | str) -> Selection:
        return Selection(manifest_out_of_core(self.con, self.storage, self.shards, spec, self.criteria, seed))


def choose_engine(storage: StorageRoot, shards: Sequence[str], log: Callable[[str], None] | None = None) -> str:
    """``numpy`` up to :func:`~quadmix_assets.settings.fanin_in_memory_rows` documents over ``shards`` (the
    cross-shard duplicate quarantine left out, counted from the files' footers), ``duckdb`` above (said
    to ``log``)."""
    n, limit = documents_count(storage, list(shards)), fanin_in_memory_rows()
    if n <= limit:
        return "numpy"
    if log is not None:
        log(f"{n:,} documents > {limit:,}: mixtures computed out of core with DuckDB")
    return "duckdb"


@contextlib.contextmanager
def open_fan_in(storage: StorageRoot, shards: Sequence[str], criteria: Sequence[str], *, engine: str | None = None,
                log: Callable[[str], None] | None = None) -> Iterator[FanIn]:
    """The fan-in over ``shards``: the engine ``engine`` names, or :func:`choose_engine`'s. The DuckDB
    engine's session (memory limit, spill folder: :func:`~quadmix_assets.storage.duck.duck_session`) is
    closed on exit."""
    engine = choose_engine(storage, shards, log) if engine is None else engine
    if engine == "numpy":
        yield InMemoryFanIn(storage, shards, criteria)
    elif engine == "duckdb":
        with duck_session(storage) as con:
            yield OutOfCoreFanIn(con, storage, shards, criteria)
    else:
        raise ValueError(f"unknown fan-in engine {engine!r}; one of {ENGINES}")


def mixture_scores(storage: StorageRoot, mixture_id: str, criteria) -> pa.Table:
    """A stored mixture's per-document scores (:func:`~quadmix_assets.mixing.scores.score_documents`),
    computed in memory from the features of the shards its scores card names."""
    spec, _ = load_spec(storage, mixture_id)
    return InMemoryFanIn(storage, scores_card(storage, mixture_id)["shards"], criteria).scores(spec)
