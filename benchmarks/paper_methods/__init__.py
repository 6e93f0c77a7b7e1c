"""The papers' other methods: discarding samples, and growing the batch."""
