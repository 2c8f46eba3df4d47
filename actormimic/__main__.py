"""`python -m actormimic` runs the CLI."""

from actormimic.cli import run

run()
