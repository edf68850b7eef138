"""The predictions context: forecasters, predictions, scoring, accuracy and comparison."""
