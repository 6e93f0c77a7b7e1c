"""LEGW at 64x against an optimizer tuned at 64x (Fashion-MNIST LSTM)."""
