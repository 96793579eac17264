"""keysync: lip synchronisation (visual dubbing) with KeySync."""

__version__ = "0.1.0"
