"""fastText supervised models: one text normalisation, deterministic training, batched scoring.

* :func:`fasttext_line` is THE normalisation, used both to write training files and before every
  prediction: lowercase, every run of whitespace (newlines, tabs, NBSP, any Unicode space) collapsed
  to one ASCII space, stripped, capped at ``max_chars`` characters.
* :func:`train_fasttext` writes a temporary ``__label__X <line>`` file and calls
  ``fasttext.train_supervised``. With ``threads=1`` and a fixed ``seed`` the saved model file is
  byte-identical across runs.

  Determinism needs one work-around. fastText initialises its input matrix in ten blocks, one per
  thread (``DenseMatrix::uniformThread``), so with ``thread=1`` only the first 10% of the matrix is
  drawn from the seeded RNG; the rest keeps whatever the allocator returns. In the installed build
  that memory is not zero-filled: a fresh process happens to get zero pages, but a second training
  in the same process inherits garbage from freed memory, which makes models differ run to run and
  often diverge ("Encountered NaN"). While training, :func:`train_fasttext` therefore sets glibc's
  ``M_PERTURB`` option to 0xFF (every ``malloc`` then returns zero-filled memory) and restores it
  afterwards, so the uninitialised 90% is always zero, exactly as upstream fastText (whose matrix is
  a zero-initialised ``std::vector``) behaves. On a libc without ``mallopt`` this is a no-op.
* :func:`predict_proba` is the scoring step of the pipeline: normalise, then the batched
  ``model.predict(list_of_lines, k=-1)`` (one C++ call per batch) and a scatter of the returned
  probabilities into a dense ``float32 (n, k)`` matrix whose columns follow the caller's label order.

  Normalisation costs a third of fastText's own prediction time, so the step feeds fastText a
  *token-equivalent* form of :func:`fasttext_line` where that is provably the same input
  (:func:`_predict_input`): the lowercased text with newlines, tabs, CRs and NBSPs turned into
  spaces, used only when the result is printable (so its only whitespace is the ASCII space) and no
  longer than ``max_chars`` (so the cap cannot bind). fastText splits on runs of spaces exactly as
  ``str.split`` does here, so it sees the same tokens, word n-grams and end-of-line marker as for
  ``fasttext_line(text)`` and returns bit-identical probabilities (tested); every other text goes
  through ``fasttext_line`` itself.

Labels are plain strings (or anything ``str()`` turns into a whitespace-free string); the
``__label__`` prefix is added and removed here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from quadmix_assets import libc

LABEL_PREFIX = "__label__"
#: default cap on a normalised line (characters); long enough for nearly every corpus document
#: (texts are capped near 10k characters upstream), short enough to bound the cost of a document.
DEFAULT_MAX_CHARS = 10_000


def _fasttext():
    import fasttext  # the full fasttext-numpy2-wheel build (train_supervised + predict)

    return fasttext


_M_PERTURB = -6  # glibc mallopt parameter
_TRAIN_LOCK = threading.Lock()


@contextmanager
def _zero_filled_malloc():
    """While inside, glibc ``malloc`` returns zero-filled memory (``M_PERTURB`` = 0xFF)."""
    mallopt = libc.function("mallopt")
    with _TRAIN_LOCK:
        ok = bool(mallopt and mallopt(_M_PERTURB, 0xFF) == 1)
        try:
            yield ok
        finally:
            if ok:
                mallopt(_M_PERTURB, 0)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def fasttext_line(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The one normalisation for training and prediction.

    Lowercase, all whitespace (incl. newlines and Unicode spaces) collapsed to single spaces,
    stripped, and capped at ``max_chars`` characters of the normalised line.

    For long inputs only a prefix of the raw text is normalised; the result is provably the same
    as normalising everything and cutting (a prefix of the raw text normalises to a prefix of the
    normalised text, except possibly its very last character — hence the strict ``>`` below).
    """
    if max_chars <= 0:
        return ""
    raw_cap = 2 * max_chars + 16
    if len(text) > raw_cap:
        line = _normalise(text[:raw_cap])
        if len(line) > max_chars:
            return line[:max_chars].rstrip()
    line = _normalise(text)
    if len(line) > max_chars:
        line = line[:max_chars].rstrip()
    return line


_FAST_WS = ("\n", "\t", "\r", "\xa0")


def as_text_list(texts) -> list[str] | Sequence[str]:
    """Texts as a sequence of ``str``: lists / tuples pass through, pyarrow arrays and other
    iterables (numpy arrays, generators) are materialised; ``None`` becomes ``""``."""
    if isinstance(texts, (list, tuple)):
        return texts
    if hasattr(texts, "to_pylist"):  # pyarrow Array / ChunkedArray
        return ["" if t is None else t for t in texts.to_pylist()]
    return ["" if t is None else str(t) for t in texts]


def _predict_input(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """A string fastText tokenises exactly like ``fasttext_line(text, max_chars)`` (module docstring)."""
    if len(text) <= max_chars:
        s = text.lower()
        for ch in _FAST_WS:
            if ch in s:
                s = s.replace(ch, " ")
        # printable => no whitespace but " " (every other str.isspace char is Cc/Zs/Zl/Zp) and no
        # "\0" (which fastText, unlike str.split, treats as a separator)
        if s.isprintable() and len(s) <= max_chars:
            return s
    return fasttext_line(text, max_chars)


def _label_str(label) -> str:
    s = str(label)
    if not s or any(c.isspace() for c in s):
        raise ValueError(f"fastText labels must be non-empty and whitespace-free, got {label!r}")
    return s


def train_fasttext(
    texts: Sequence[str],
    labels: Sequence,
    *,
    seed: int = 0,
    epoch: int = 5,
    lr: float = 0.1,
    dim: int = 100,
    word_ngrams: int = 1,
    min_count: int = 1,
    max_chars: int = DEFAULT_MAX_CHARS,
    threads: int = 1,
    **kw,
):
    """Train a supervised fastText model on ``texts`` with string ``labels``.

    Extra keyword arguments go to ``fasttext.train_supervised`` unchanged (``loss``, ``bucket``,
    ``minn``, ``maxn``, ``ws``, ``neg``, ``t``, ``lr_update_rate`` ...). Training lines are written
    to a temporary file that is removed afterwards. With ``threads=1`` training is deterministic
    for a given ``seed`` (byte-identical saved model; see the module docstring for the zero-filled
    allocation that makes it so).
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if len(texts) == 0:
        raise ValueError("cannot train on zero documents")
    ft = _fasttext()
    fd, path = tempfile.mkstemp(prefix="quadmix-fasttext-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for text, label in zip(texts, labels):
                fh.write(f"{LABEL_PREFIX}{_label_str(label)} {fasttext_line(text, max_chars)}\n")
        kw.setdefault("verbose", 0)
        with _zero_filled_malloc():
            return ft.train_supervised(
                input=path,
                seed=int(seed),
                epoch=int(epoch),
                lr=float(lr),
                dim=int(dim),
                wordNgrams=int(word_ngrams),
                minCount=int(min_count),
                thread=int(threads),
                **kw,
            )
    finally:
        os.unlink(path)


def model_labels(model) -> list[str]:
    """The model's labels without the ``__label__`` prefix (fastText's internal order)."""
    return [lab[len(LABEL_PREFIX):] if lab.startswith(LABEL_PREFIX) else lab for lab in model.get_labels()]


def predict_proba(
    model,
    texts: Iterable[str],
    labels: Sequence,
    batch_size: int = 4096,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> np.ndarray:
    """Class probabilities, ``float32 (n, len(labels))``, columns in the order of ``labels``.

    Texts are normalised as :func:`fasttext_line` does (same ``max_chars`` as in training; via the
    token-equivalent :func:`_predict_input`) and scored with the batched
    ``model.predict(lines, k=-1)``. A label the model does not know gets a column of zeros.
    """
    texts = as_text_list(texts)
    n = len(texts)
    cols = {LABEL_PREFIX + _label_str(lab): j for j, lab in enumerate(labels)}
    k = len(cols)
    out = np.zeros((n, k), dtype=np.float32)
    if n == 0 or k == 0:
        return out
    batch_size = max(1, int(batch_size))
    get = cols.get
    for start in range(0, n, batch_size):
        batch = [_predict_input(t, max_chars) for t in texts[start : start + batch_size]]
        all_labels, all_probs = model.predict(batch, k=-1)
        # flatten (row, column, prob) triples and scatter them in one numpy call
        lens = np.fromiter(map(len, all_labels), dtype=np.int64, count=len(batch))
        flat_cols = np.fromiter(
            (get(lab, -1) for labs in all_labels for lab in labs), dtype=np.int64, count=int(lens.sum())
        )
        flat_probs = np.concatenate([np.asarray(p, dtype=np.float32) for p in all_probs]) if len(batch) else []
        rows = np.repeat(np.arange(start, start + len(batch)), lens)
        keep = flat_cols >= 0
        out[rows[keep], flat_cols[keep]] = np.asarray(flat_probs, dtype=np.float32)[keep]
    # fastText's softmax can return values a hair above 1 after float rounding
    np.clip(out, 0.0, 1.0, out=out)
    return out


class ModelWriteError(OSError):
    """A fastText model file was not written completely (full disk, file-size limit, I/O error)."""


def save_model(model, path: str | os.PathLike) -> str:
    """Save ``model`` to a local ``path`` (parent folders are created) and verify it; returns the path.

    fastText's ``saveModel`` writes through a C++ ``ofstream`` and never checks it: on a full disk or past
    a file-size limit (``EFBIG``; Python ignores ``SIGXFSZ``) it leaves a truncated file and returns as if
    all went well. The file is therefore checked against the model in memory: it must end with the two
    matrices exactly as fastText lays them out (``quant`` flag, int64 rows, int64 columns, float32 data; the
    input matrix, then the ``qout`` flag and the output matrix), else :class:`ModelWriteError` is raised and
    the partial file removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(path))
    try:
        _verify_saved(model, path)
    except ModelWriteError:
        path.unlink(missing_ok=True)
        raise
    return str(path)


def _matrix_record(matrix: np.ndarray) -> bytes:
    flag = b"\x00"  # not quantized
    shape = np.asarray(matrix.shape, dtype=np.int64).tobytes()
    return flag + shape + np.ascontiguousarray(matrix, dtype=np.float32).tobytes()


def _verify_saved(model, path: Path) -> None:
    size = path.stat().st_size
    if model.is_quantized():  # quantized matrices have no dense layout to compare; the size must be plausible
        if size == 0:
            raise ModelWriteError(f"fastText wrote an empty model file {path}")
        return
    tail = _matrix_record(model.get_input_matrix()) + _matrix_record(model.get_output_matrix())
    if size <= len(tail):
        raise ModelWriteError(f"fastText's model file {path} was not written completely: {size} bytes, less than "
                              f"its matrices alone ({len(tail)} bytes; full disk or file-size limit?)")
    with open(path, "rb") as fh:
        fh.seek(size - len(tail))
        if fh.read() != tail:
            raise ModelWriteError(f"fastText's model file {path} ({size} bytes) does not end with the model's "
                                  "matrices: it was not written completely (full disk or file-size limit?)")


def load_model(path: str | os.PathLike):
    """Load a fastText model from a local path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fastText model at {path}")
    return _fasttext().load_model(str(path))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (a model's version)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
