"""`python -m toolkit`: the toolkit CLI (what torchrun starts in each process of `toolkit train --nproc`)."""

from toolkit.cli.main import main

if __name__ == "__main__":
    main()
