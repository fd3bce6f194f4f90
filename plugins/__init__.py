"""First-party natsd plugins, one sub-package each.

They are registered through the same ``natsd`` entry-point group that
third-party distributions use, and are enabled from the config file.
"""

from natsd import compiled as _compiled

from .compiled_modules import MODULES as _MODULES

_compiled.add_group(__name__, __path__[0], _MODULES)  # before any of them is imported
