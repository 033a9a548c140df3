"""`make run`: a developer's machine with the provider sandbox."""

from .base import *  # noqa: F403
from .base import env_bool

DEBUG = env_bool("DEBUG", True)
# The inbox widget's demo page (/demo/inbox/), which `make run` prints.
DEMO_PAGES = env_bool("DEMO_PAGES", True)
