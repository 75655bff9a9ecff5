"""`from fairseq_lite import metrics`: fairseq's old home of `logging.metrics` (fairseq 0.12.2 still
aliases `fairseq.metrics` to it, and plugins import it so). The same module, not a copy: the names
below are logging.metrics's own objects, acting on its one set of aggregators."""

from fairseq_lite.logging.metrics import (  # noqa: F401
    aggregate,
    get_active_aggregators,
    get_meter,
    get_meters,
    get_smoothed_value,
    get_smoothed_values,
    load_state_dict,
    log_custom,
    log_derived,
    log_scalar,
    log_scalar_sum,
    log_speed,
    log_start_time,
    log_stop_time,
    reset,
    reset_meter,
    reset_meters,
    state_dict,
)
