"""Machine learning: datasets, hyperparameters, training runs and early stopping."""
