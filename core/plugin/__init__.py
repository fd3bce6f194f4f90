"""The plugin contract (:mod:`.hookspecs`, :mod:`.contracts`) and the manager that loads plugins."""
