"""fairseq's per-module decoding cache keys (`fairseq.incremental_decoding_utils`).

A decoder keeps what it computed for the previous steps in one dict, `incremental_state`, that the
generator passes to every step. Each module that caches something stores it under its own key
("<id>.<name>"), so two instances of one class do not overwrite each other's cache.
"""

import uuid
from typing import Any


class FairseqIncrementalState:
    """A mixin: get_incremental_state/set_incremental_state under this instance's own key."""

    def init_incremental_state(self) -> None:
        self._incremental_state_id = str(uuid.uuid4())

    def _get_full_incremental_state_key(self, key: str) -> str:
        if getattr(self, "_incremental_state_id", None) is None:
            # Made on first use, so a subclass need not call any __init__ of ours.
            self.init_incremental_state()
        return f"{self._incremental_state_id}.{key}"

    def get_incremental_state(self, incremental_state: dict[str, Any] | None, key: str) -> Any:
        """This module's value of `key`, or None."""
        full_key = self._get_full_incremental_state_key(key)
        if incremental_state is None or full_key not in incremental_state:
            return None
        return incremental_state[full_key]

    def set_incremental_state(self, incremental_state: dict[str, Any] | None, key: str, value: Any) -> Any:
        """Store `value` under this module's `key`; returns the (same) dict."""
        if incremental_state is not None:
            incremental_state[self._get_full_incremental_state_key(key)] = value
        return incremental_state


def with_incremental_state(cls: type) -> type:
    """Class decorator: give `cls` FairseqIncrementalState's methods (as fairseq's decorator does)."""
    if not issubclass(cls, FairseqIncrementalState):
        cls.__bases__ = (FairseqIncrementalState, *(b for b in cls.__bases__ if b is not FairseqIncrementalState))
    return cls
