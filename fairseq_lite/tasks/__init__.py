"""Tasks register themselves on import."""

from fairseq_lite.tasks import (
    language_modeling,  # noqa: F401
    translation,  # noqa: F401
)
from fairseq_lite.tasks.fairseq_task import FairseqTask  # noqa: F401
