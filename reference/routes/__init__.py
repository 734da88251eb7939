"""HTTP route handlers: thin, typed, and free of tensor code."""
