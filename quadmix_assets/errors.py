"""Failures in plain language: what failed, why, and what to do, in one or two sentences.

The runner and the ``quadmix`` command show every failure through :func:`explain` (a live exception) or
:func:`explain_error` (a class name and message, as Dagster records a failed step). The exception class and
the stack are shown only in verbose mode (``quadmix --verbose``, :func:`set_verbose`).
"""

from __future__ import annotations

import os
import re
import traceback

_VERBOSE = False


#: (exception class names, or None for any; regex on the message, or None; what to do). First match wins;
#: class names match the class or any of its bases.
HINTS: list[tuple[tuple[str, ...] | None, str | None, str]] = [
    (None, r"CUDA out of memory|out of memory", "use a smaller preset (--preset cpu or test) or fewer configs (--configs), "
     "or free memory used by other processes"),
    (("MemoryError",), None, "use a smaller preset (--preset cpu or test) or fewer configs (--configs), or free memory"),
    (None, r"No space left on device", "free disk space, or point --storage (and --dagster-home) at a bigger disk"),
    (("LocationPolicyError",), None, "use a location this deployment allows (see QUADMIX_STORAGE_ALLOWED_PREFIXES / "
     "QUADMIX_CORPUS_ALLOWED_PREFIXES)"),
    (("PermissionError",), None, "choose a folder you can write (--storage, --dagster-home) or fix its permissions"),
    (("UnsafeKeyError", "PathEscapeError"), None, "rename the file or key to plain letters, digits, '.', '-' and '_' "
     "(no '/', '..' or absolute paths)"),
    (("ShardError",), None, "fix or remove that file; the other shards are not affected"),
    (("FileNotFoundError",), None, "check the path (--corpus, --storage, --data-dir), or run `quadmix run` first to "
     "create the missing output"),
    (("ModuleNotFoundError", "ImportError"), None, "install the project's dependencies (`make env`, or `pip install -e .` "
     "in the project's environment)"),
    (None, r"(?i)connection|timed out|temporarily unavailable|name or service not known",
     "check the network and the storage credentials, then run again (finished steps are not redone)"),
    (("KeyboardInterrupt",), None, "run the same command again to continue; finished steps are kept"),
    (None, r"matched no shard files", "give --corpus (or QUADMIX_CORPUS) a folder or a quoted glob of .jsonl, .jsonl.gz "
     "or .parquet files, e.g. --corpus 'data/*.jsonl.gz'"),
    (None, r"^QUADMIX_\w+ must be an integer", "set that variable to a whole number, or unset it"),
]

#: messages that already say what to do; no hint is added to them
_ALREADY_ADVISES = re.compile(r"(?i)(To fix:|\brun `|rerun|rematerialize|pass --|give |use |set |install |check |fix |choose )")


def set_verbose(on: bool = True) -> None:
    global _VERBOSE
    _VERBOSE = bool(on)


def verbose() -> bool:
    return _VERBOSE


def _first_line(message: str) -> str:
    lines = [x.strip() for x in str(message or "").strip().splitlines() if x.strip()]
    return lines[0] if lines else ""


def hint_for(class_names: list[str] | tuple[str, ...], message: str) -> str | None:
    """What to do about a failure of one of ``class_names`` (the class and its bases) with ``message``."""
    for classes, pattern, hint in HINTS:
        if classes is not None and not set(classes) & set(class_names):
            continue
        if pattern is not None and not re.search(pattern, message or ""):
            continue
        return hint
    return None


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if not text or text[-1] in ".!?)" else text + "."


def plain(what: str | None, why: str, class_names: list[str] | tuple[str, ...] = (), *, hint: str | None = None,
          where: str | None = None) -> str:
    """``"<what> failed: <why>. <what to do>."``: one or two sentences. ``what`` may be None (the caller
    names it, e.g. the runner's ``[shard 2/16] key: FAILED:`` prefix). Where nothing is known to do about
    it, the underlying error instead: its class and ``where`` it was raised (``file:line``)."""
    why = _first_line(why) or (class_names[0] if class_names else "unknown error")
    if why.startswith("[Errno"):  # OSError's "[Errno 28] No space left on device: 'x'"
        why = re.sub(r"^\[Errno \d+\]\s*", "", why)
    todo = hint or hint_for(class_names, why)
    text = _sentence(f"{what} failed: {why}" if what else why)
    if todo:
        text += f" To fix: {_sentence(todo)}" if not todo[0].isupper() else f" {_sentence(todo)}"
    elif class_names and not _ALREADY_ADVISES.search(why):
        # no advice to give: the underlying error as it is, so that it can be looked up or reported
        text += f" The error: {class_names[0]}{f' at {where}' if where else ''} (--verbose shows the stack)."
    if _VERBOSE and class_names:
        text += f" [{class_names[0]}]"
    return text


def _class_names(exc: BaseException) -> list[str]:
    return [c.__name__ for c in type(exc).__mro__]


def _user_exception(exc: BaseException) -> BaseException:
    """The innermost cause that is not Dagster's wrapper, or ``exc``."""
    seen = set()
    cur = exc
    while id(cur) not in seen:
        seen.add(id(cur))
        if not type(cur).__name__.startswith("Dagster"):
            return cur
        nxt = cur.__cause__ or cur.__context__
        if nxt is None:
            break
        cur = nxt
    return exc


def explain(exc: BaseException, what: str | None = None) -> str:
    """A live exception in plain language (see :func:`plain`)."""
    inner = _user_exception(exc)
    msg = str(inner)
    if isinstance(inner, KeyError) and inner.args:
        msg = str(inner.args[0])
    if isinstance(inner, OSError) and getattr(inner, "strerror", None):
        msg = f"{inner.strerror}: {inner.filename}" if inner.filename else inner.strerror
    return plain(what, msg or type(inner).__name__, _class_names(inner), where=_raised_at(inner))


def _raised_at(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame that raised ``exc`` (the file relative to the package or
    site-packages folder it is in), or None without a traceback."""
    tb = exc.__traceback__
    if tb is None:
        return None
    frame = traceback.extract_tb(tb)[-1]
    path = frame.filename.replace("\\", "/")
    for marker in ("/site-packages/", "/quadmix_assets/"):
        if marker in path:
            path = ("quadmix_assets/" if marker == "/quadmix_assets/" else "") + path.rsplit(marker, 1)[1]
            break
    else:
        cwd = os.getcwd().replace("\\", "/").rstrip("/") + "/"
        path = path[len(cwd):] if path.startswith(cwd) else path
    return f"{path}:{frame.lineno}"


def explain_error(cls_name: str | None, message: str, what: str | None = None,
                  bases: list[str] | tuple[str, ...] = ()) -> str:
    """A recorded error (a Dagster step failure's class name and message) in plain language."""
    return plain(what, message, [c for c in (cls_name, *bases) if c])


def stack(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
