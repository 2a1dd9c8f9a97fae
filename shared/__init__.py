"""The app's package: everything but the Functions bindings lives here."""

__version__ = "0.1.0"
