"""Training: the trainer that builds a run and loops (``trainer``), one D+G update
(``step``), every seeded random stream (``rng``) and torch.distributed setup
(``distributed``)."""
