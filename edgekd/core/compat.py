"""What differs between the Pythons edgekd supports (3.10, the Jetson's, and up)."""
try:
    import tomllib
except ModuleNotFoundError:     # Python 3.10: tomllib is tomli, adopted into the standard library
    import tomli as tomllib

__all__ = ["tomllib"]
