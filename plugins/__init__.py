"""First-party natsd plugins, one sub-package each.

They are registered through the same ``natsd`` entry-point group that
third-party distributions use, and are enabled from the config file.
"""
