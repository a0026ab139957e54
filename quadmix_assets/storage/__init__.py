"""Storage under one root (a local folder or any fsspec URL): atomic writes and provenance.

Every file is written aside and renamed into place, so a reader never sees half a file. Parquet files
carry their provenance (what produced them: code version, models, parameters, input data versions) in
the schema metadata under the key ``quadmix``; the same inputs give the same bytes. Nothing escapes the
root: keys that become path components are checked (:mod:`quadmix_assets.storage.keys`), and every
relative path must stay under the root.
"""

from quadmix_assets.storage.keys import (
    PathEscapeError,
    UnsafeKeyError,
    check_key,
    check_relpath,
    derive_key,
    is_safe_key,
)
from quadmix_assets.storage.root import TMP_MARK, StorageNotWritable, StorageRoot, canonical_json, content_hash

__all__ = [
    "PathEscapeError",
    "StorageNotWritable",
    "StorageRoot",
    "TMP_MARK",
    "UnsafeKeyError",
    "canonical_json",
    "check_key",
    "check_relpath",
    "content_hash",
    "derive_key",
    "is_safe_key",
]
