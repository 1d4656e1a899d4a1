"""Accuracy at low resolution: verification on pairs and open-set 1:N identification (BTNet's protocol).

``metrics`` is plain numpy; ``pairs`` and ``ident`` run a package through the Recognizer's
detector and graphs; ``plots`` needs the ``plot`` extra (matplotlib), imported when used.
"""
