"""Native kernels chatref builds for the machine it runs on; each module says what it owns."""
