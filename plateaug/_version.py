"""The package version, in one place (setup.cfg and export metadata read it)."""

__version__ = "0.1.0"
