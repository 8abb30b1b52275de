"""Built-in features, each an ordinary plugin registered like any instructor's."""
