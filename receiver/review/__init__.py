"""The review of rejected items: masking, replay and the reviewers' browser session."""
