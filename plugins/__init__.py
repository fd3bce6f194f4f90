"""First-party natsd plugins, one sub-package each.

They are registered through the same ``natsd`` entry-point group that
third-party distributions use, and are enabled from the config file.
"""

import natsd

from .compiled_modules import MODULES

natsd.declare_compiled(__name__, __path__[0], MODULES)  # before any of them is imported
