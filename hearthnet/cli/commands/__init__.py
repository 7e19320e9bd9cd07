"""One module per `hearthnet` subcommand (STYLE.md, pipx). Each defines `cli`, the click
command that only declares options, and one helper that does the work and returns a
typed result for `hearthnet.cli.render`."""
