"""The package's version (setup.cfg states the same)."""
__version__ = '0.1.0'
