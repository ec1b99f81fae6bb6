"""The admin's side: the command line, one module per subcommand, and the client of the daemon's control socket.

Only `run` imports the daemon (`adaptive.daemon`); every other command talks to it over the socket or
composes the stages it needs itself."""
