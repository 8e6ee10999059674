"""Pure validation: findings, the rule catalogue and the validation levels."""
