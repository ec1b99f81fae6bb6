"""The admin's side: the command line (and, later, the control socket it talks to the daemon over)."""
