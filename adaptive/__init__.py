"""adaptive: a log-driven adaptive blocker for mail servers.

The pipeline, one package or module per stage:
sources → filters → events → scoring → decisions → nftables,
with state (SQLite), control (socket + CLI) and metrics as side ports.
"""

__version__ = "0.1.0"
