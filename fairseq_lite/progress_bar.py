"""`from fairseq_lite import progress_bar`: fairseq's old import path of `logging.progress_bar`: fairseq's
progress bars (progress_bar, JsonProgressBar, SimpleProgressBar, ...). fairseq 0.12.2 still aliases
`fairseq.progress_bar` to it, and plugins import it so. This name is that module itself (sys.modules), not a
copy.
"""

import sys

from fairseq_lite.logging import progress_bar as _module

sys.modules[__name__] = _module
