"""The manifest registry: creators, published manifest versions, revocation, the change feed."""
