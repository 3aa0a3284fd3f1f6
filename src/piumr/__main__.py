"""``python -m piumr ...`` (what ``torchrun -m piumr train ...`` runs): the CLI entry point."""

import importlib

if __name__ == "__main__":
    importlib.import_module("piumr_cli.main").main()
