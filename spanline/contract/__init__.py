"""The span contract every stage shares: the schema, batch validation, dead letters, user-id
hashing and content redaction."""
