"""``python -m wsss`` and ``torchrun -m wsss``."""

from wsss.cli import main

if __name__ == "__main__":
    main()
