"""``python -m piumr ...`` (what ``torchrun -m piumr train ...`` runs): the CLI entry point."""

from piumr_cli.main import main

if __name__ == "__main__":
    main()
