// Package edge is Verge's cache engine: the HTTP handler that edges and hubs
// run. For each request it finds the property by Host (an unknown host is
// refused, so the node is never an open proxy), looks the cache key up in
// storage, serves fresh hits, revalidates or serves stale responses as RFC
// 9111 and RFC 5861 allow, and collapses concurrent misses for one key into a
// single upstream fetch whose body streams to every waiting client while it
// is stored.
//
// The next tier is not this package's business: it arrives as an
// http.RoundTripper (a hub ring, a pool, or a plain transport to the origin).
// One engine serves both roles; a hub is an edge whose upstream is the origin.
package edge
