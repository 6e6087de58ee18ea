"""The only wing that touches a store: locations, batched and retried reads, metadata documents, prefetch, and the writer's puts."""
