"""First-party natsd plugins, one sub-package each.

They are registered through the same ``natsd`` entry-point group that
third-party distributions use, and are enabled from the config file.
"""

from natsd.plugin.compiled import declare as _declare

from .compiled_modules import MODULES as _MODULES

_declare(__name__, __path__[0], _MODULES)  # before any of them is imported
