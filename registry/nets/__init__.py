"""Networks and adversarial losses: the built-in G/D pairs (``models``) and the GAN losses
as pure functions of D's logits (``losses``)."""
