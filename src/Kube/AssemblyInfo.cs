// The small controller runtime over KubernetesClient (design section 6, style guide): cache, queue,
// leader election, events, status writes. Filled in by issue 4.
