"""The built-in candidate families; importing this package registers them."""
from . import convs, teacher  # noqa: F401
