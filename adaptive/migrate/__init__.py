"""Migrating to adaptive from another blocker: fail2ban, whose configuration and database are read here.

`jails` reads fail2ban's jail configuration as fail2ban 1.0 does, remembering where each value came
from; `dropin` turns the mail jails into an adaptive drop-in, each key commented with its origin;
`bans` reads the live bans of fail2ban's database. Nothing here imports the daemon: `adaptive import`
(`adaptive.control.import_`) composes them with the state or the control socket.
"""
