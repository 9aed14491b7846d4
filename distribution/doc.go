// Package distribution moves content between the tiers of a Verge CDN.
//
// Parents is an edge's upstream transport: each cache key has a home hub in
// the edge's region, chosen on a consistent-hash ring with virtual nodes
// (package ring), so the region holds one copy of the long tail instead of
// one per hub. Hubs that are down (package health: active probes plus
// failures seen by live traffic) are skipped for the next hub on the ring;
// the origin comes last. Pool is the transport for a plain pool of servers
// under one of the load-balancing policies of package balance.
//
// Both are http.RoundTrippers configured by typed structs (ParentsConfig,
// PoolConfig) that role configs embed, so the edge never imports this
// package: cmd/verge builds the transport and hands it over.
//
// Content and purges also move down the tree: package fanout sends one admin
// request to every node and collects an ack per node, package purgelog
// numbers purges, keeps each node's log of what it applied and lets a node
// that missed some catch up by comparing Merkle summaries with a peer, and
// package preload pushes a URL list to the edges, which fill through their
// hubs.
package distribution
