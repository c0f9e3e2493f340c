"""One module per area of the seed's REST tree; each `routes(ctx)` returns its router."""
