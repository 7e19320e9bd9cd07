"""HearthNet: a neighbourhood node that keeps AI and coordination running offline."""
from hearthnet.version import CONTRACT_VERSION, __version__

__all__ = ["__version__", "CONTRACT_VERSION"]
