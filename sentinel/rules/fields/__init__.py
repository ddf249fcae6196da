"""Field extractors for rules, one module per event kind; each registers its fields by name."""
