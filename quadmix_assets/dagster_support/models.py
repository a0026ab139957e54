"""The stored-model helpers the assets use, from the library (:mod:`quadmix_assets.scoring.stored_models`)."""

from quadmix_assets.scoring.stored_models import import_model_file, load_stored_model, local_model_dir, upload_model_dir

__all__ = ["import_model_file", "load_stored_model", "local_model_dir", "upload_model_dir"]
