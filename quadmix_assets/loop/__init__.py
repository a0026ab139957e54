"""The optimisation loop's decisions (:mod:`quadmix_assets.loop.policy`): plain functions over the facts of
a storage root, executed by whoever runs the steps (``quadmix run``, the ``quadmix_loop`` sensor)."""

from quadmix_assets.loop.policy import (
    SEARCH_OPTIMUM,
    SELECTED_AS_TAG,
    Facts,
    Finished,
    RefreshPolicy,
    State,
    Status,
    Step,
    next_step,
)

__all__ = ["SEARCH_OPTIMUM", "SELECTED_AS_TAG", "Facts", "Finished", "RefreshPolicy", "State", "Status", "Step", "next_step"]
