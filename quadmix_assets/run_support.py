"""What the runner (:mod:`quadmix_assets.runner`) and its partition pool (:mod:`quadmix_assets.run_pool`)
both need: the quiet run config, the runner tag and its process token, and the plain-language failure
message of a run. Neither of the two imports the other for these (the pool never imports the runner)."""

from __future__ import annotations

import socket

# Dagster's console logger at WARNING: warnings (quarantined records, left-out shards) and errors show,
# per-step debug lines do not; every event is still in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


#: tag on every run ``quadmix run`` executes: "host:pid:process start", to tell a killed run from a live one
RUNNER_TAG = "quadmix/runner"


def _error_text(error) -> str:
    return error.message.strip().splitlines()[0] if error is not None and error.message.strip() else ""


def failure_message(result) -> str:
    """Why the first failed step failed and what to do, in plain language (:mod:`quadmix_assets.errors`): a
    ``Failure``'s description, else the user code's outermost exception under Dagster's wrappers (a
    ``ShardError`` naming the file, not the zlib error it was raised from); with ``--verbose`` also the
    exception class and the stack. A run done in a worker (:class:`~quadmix_assets.run_pool.Outcome`)
    brings its message written there."""
    from quadmix_assets import errors

    if getattr(result, "failure", ""):
        return result.failure

    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            user = getattr(data, "user_failure_data", None) if data else None
            if user is not None and getattr(user, "description", None):
                return user.description.strip().splitlines()[0]
            error = data.error if data else None
            while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause  # Dagster's wrappers around the user code's exception
            if error is None:
                return errors.plain(None, "a step failed without an error message", ())
            text = errors.explain_error(error.cls_name, error.message)
            if errors.verbose() and error.stack:
                text += "\n" + "".join(error.stack).rstrip()
            return text
    for event in result.all_events:  # a run that failed before any step (a resource refusing its config, a key)
        error = getattr(event.event_specific_data, "error", None) if event.is_failure else None
        while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
            error = error.cause
        if error is not None and error.message.strip():
            return "the run failed before any step ran: " + errors.explain_error(error.cls_name, error.message)
    return errors.plain(None, "the run failed before any step ran", ())


def process_token(pid: int) -> str:
    """``host:pid:start`` of a process (start = its start time in clock ticks on Linux, else empty)."""
    start = ""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            start = f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        pass
    return f"{socket.gethostname()}:{pid}:{start}"
