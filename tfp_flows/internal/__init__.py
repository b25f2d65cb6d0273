"""Private helpers: argument validation and Keras-weight ownership. Not public API."""
