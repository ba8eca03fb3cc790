"""vmbtool: save, inspect, diff, validate and restore the saved state of VMBus channels."""

__version__ = "0.1.0"
