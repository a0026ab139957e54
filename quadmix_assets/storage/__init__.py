"""Storage under one root (a local folder or any fsspec URL): atomic writes and provenance.

Every file is written aside and renamed into place, so a reader never sees half a file. Parquet files
carry their provenance (what produced them: code version, models, parameters, input data versions) in
the schema metadata under the key ``quadmix``; the same inputs give the same bytes.
"""

from quadmix_assets.storage.root import TMP_MARK, StorageNotWritable, StorageRoot, canonical_json, content_hash

__all__ = ["TMP_MARK", "StorageNotWritable", "StorageRoot", "canonical_json", "content_hash"]
