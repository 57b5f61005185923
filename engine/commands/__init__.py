"""One module per `spectralx` subcommand; each defines `register(subparsers)`."""
