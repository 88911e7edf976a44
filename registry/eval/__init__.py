"""Generic evaluation: disentanglement metrics against ground-truth factors
(``disentanglement``) and the assignment/accuracy helpers (``assignment``). Nothing here
knows a plugin; a representation comes in as an ``encode`` callable."""
