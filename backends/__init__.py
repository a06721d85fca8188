"""Framework backends behind one interface, and the registry that finds them.

Importing this package imports no deep-learning framework: a backend's framework is
imported only when that backend is asked for, so the suite runs with one framework
installed and says which extra is missing when the other is requested.
"""

from backends.base import Backend, MissingFrameworkError
from backends.registry import BACKEND_NAMES, check_available, create_backend

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "MissingFrameworkError",
    "check_available",
    "create_backend",
]
