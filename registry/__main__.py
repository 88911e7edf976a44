"""``python -m registry`` runs the ganrun CLI (useful as ``torchrun -m registry ...``)."""

from registry.cli import main

if __name__ == "__main__":
    main()
