"""What differs between the Pythons edgekd supports (3.10, the Jetson's, and up)."""
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:                           # Python 3.10: tomllib is tomli, adopted into the standard library
    import tomli as tomllib

__all__ = ["tomllib"]
