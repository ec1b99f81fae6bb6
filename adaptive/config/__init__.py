"""The configuration: TOML files merged key by key (`loading`), validated into frozen dataclasses (`schema`).

Everything else imports from here: `from adaptive.config import Config, load, ConfigError`.
"""

from adaptive.config.loading import (
    DEFAULT_CONFIG,
    DEFAULT_DROPINS,
    ConfigError,
    build,
    config_files,
    load,
    read_files,
)
from adaptive.config.schema import (
    DEFAULT_WEIGHTS,
    MAX_TRACKED,
    SHIPPED_FILTERS,
    SOURCE_TYPES,
    AllowlistConfig,
    BanProfile,
    Config,
    ControlConfig,
    DecisionsConfig,
    FiltersConfig,
    MetricsConfig,
    NftablesConfig,
    OutboundConfig,
    PortLimit,
    RateLimitConfig,
    ScoringConfig,
    SourceConfig,
    StateConfig,
    WholeHostConfig,
    host_port,
)
from adaptive.vocabulary import REASONS

__all__ = [
    "DEFAULT_CONFIG", "DEFAULT_DROPINS", "DEFAULT_WEIGHTS", "MAX_TRACKED", "REASONS", "SHIPPED_FILTERS",
    "SOURCE_TYPES",
    "AllowlistConfig", "BanProfile", "Config", "ConfigError", "ControlConfig", "DecisionsConfig",
    "FiltersConfig", "MetricsConfig", "NftablesConfig", "OutboundConfig", "PortLimit", "RateLimitConfig",
    "ScoringConfig", "SourceConfig", "StateConfig", "WholeHostConfig",
    "build", "config_files", "host_port", "load", "read_files",
]
