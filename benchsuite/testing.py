"""Contract checks for plugin authors, shipped as a pytest plugin (entry point ``pytest11``).

Kept import-light: pytest loads this module in every session of an environment where benchsuite
is installed, so nothing heavy is imported at module level.
"""
