"""Domain logic of the smart contact list back end (one module per concern)."""
