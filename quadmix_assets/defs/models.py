"""Loading the fastText models that assets write, once per process."""

from __future__ import annotations

from functools import lru_cache

from quadmix_assets.scoring.fasttext_model import load_model
from quadmix_assets.storage import StorageRoot, layout


@lru_cache(maxsize=8)
def _load(url: str, relpath: str, sha256: str):
    storage = StorageRoot(url)
    with storage.local_file(relpath) as local:
        return load_model(local)


def load_stored_model(storage: StorageRoot, name: str):
    """The model called ``name`` from the storage root and its card (version = sha256 of the file)."""
    card = storage.read_json(layout.model_card(name))
    return _load(storage.url, layout.model_file(name), card["sha256"]), card


def import_model_file(storage: StorageRoot, name: str, source: str) -> str:
    """Copy a configured model (local path or fsspec URL) into the storage root; returns its path."""
    import fsspec

    with fsspec.open(source, "rb") as f:
        data = f.read()
    return storage.write_bytes(layout.model_file(name), data)
