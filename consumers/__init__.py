"""Consumer services: the state projector (and, later, receipt dispatch and quarantine indexing)."""
