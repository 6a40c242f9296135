# The helpers and fixtures live in serve_support.py: test modules import them by that unique name
# (several test folders have a conftest.py, so `from serve_support import ...` could find another folder's).
from serve_support import *  # noqa: F401,F403
