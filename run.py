"""Entry point: python run.py [--config F] [COMMAND]. See `python run.py --help`."""
from bot.cli import cli

if __name__ == "__main__":
    cli()
