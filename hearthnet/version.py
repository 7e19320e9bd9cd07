__version__ = "0.1.0"
CONTRACT_VERSION = "1.0"
