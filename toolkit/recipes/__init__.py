"""The shipped recipes, one YAML file per ARCH-TASK (linked as recipes/ at the repository root)."""
