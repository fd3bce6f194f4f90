"""Configuration: the nats-server ``.conf`` parser, :class:`ServerConfig`, TLS settings, logging.

Plugins validate their own blocks with :func:`config_error` (an error that
names the file, line and key) and read the server's settings from
:class:`ServerConfig`.
"""

from .options import (
    DEFAULT_PORT,
    NOT_SUPPORTED,
    RANDOM_PORT,
    ConfigError,
    ErrorCollector,
    PluginSettings,
    ServerConfig,
    config_error,
    from_mapping,
    load,
    nats_server_port,
    plugin_settings,
    size_setting,
    with_tls,
)

__all__ = ["DEFAULT_PORT", "NOT_SUPPORTED", "RANDOM_PORT", "ConfigError", "ErrorCollector",
           "PluginSettings", "ServerConfig", "config_error", "from_mapping", "load",
           "nats_server_port", "plugin_settings", "size_setting", "with_tls"]
