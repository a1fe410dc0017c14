"""Moved to ``shared.messaging``: this name stays only while modules being
refactored in parallel still import it (issue 12); import from
``shared.messaging``."""

from shared.messaging import *  # noqa: F401,F403
from shared.messaging import __all__  # noqa: F401
