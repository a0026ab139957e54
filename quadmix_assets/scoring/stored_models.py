"""Models that assets write under the storage root (``models/<name>/``): load (once per process), upload,
import. Plain library code: the asset layer and the criterion registry's scorers both use it."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from quadmix_assets.scoring.fasttext_model import load_model
from quadmix_assets.storage import StorageRoot, layout


@dataclass(frozen=True)
class BuiltModel:
    """What a criterion's model builder (:class:`quadmix_assets.scoring.criteria.Model`) returns once it has
    trained or imported its model into ``models/<name>/``: where it is stored (``uri``: the model file or
    folder, or its card), plain metadata values for the asset (numbers, strings), and ``path``: a stored
    file or folder to link from the asset (or None)."""

    uri: str
    metadata: dict = field(default_factory=dict)
    path: str | None = None


@lru_cache(maxsize=8)
def _load(url: str, relpath: str, sha256: str):
    storage = StorageRoot(url)
    with storage.local_file(relpath) as local:
        return load_model(local)


def load_stored_model(storage: StorageRoot, name: str):
    """The fastText model called ``name`` from the storage root and its card (version = sha256 of the file)."""
    card = storage.read_json(layout.model_card(name))
    return _load(storage.url, layout.model_file(name), card["sha256"]), card


def upload_model_dir(storage: StorageRoot, name: str, local_dir: str | Path) -> list[str]:
    """Copy every file of a local model folder to ``models/<name>/`` (atomically, file by file)."""
    written = []
    for f in sorted(Path(local_dir).iterdir()):
        if f.is_file():
            written.append(storage.write_file(f"{layout.model_dir(name)}/{f.name}", f))
    return written


@contextmanager
def local_model_dir(storage: StorageRoot, name: str):
    """A local folder holding ``models/<name>/`` (the folder itself when the storage root is local)."""
    if storage.is_local:
        yield Path(storage.path(layout.model_dir(name)))
        return
    with tempfile.TemporaryDirectory(prefix=f"quadmix-{name}-") as d:
        for rel in storage.list(layout.model_dir(name)):
            storage.fs.get(storage.path(rel), str(Path(d) / Path(rel).name))
        yield Path(d)


def import_model_file(storage: StorageRoot, name: str, source: str) -> str:
    """Copy a configured model (local path or fsspec URL) into the storage root; returns its path."""
    import fsspec

    with fsspec.open(source, "rb") as f:
        return storage.write_stream(layout.model_file(name), f)
