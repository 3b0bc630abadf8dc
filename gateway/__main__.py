"""`python -m gateway`: the `portcullis` command line."""

from gateway.cli import main

if __name__ == "__main__":
    main()
