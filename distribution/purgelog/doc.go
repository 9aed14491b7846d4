// Package purgelog keeps the cluster's purge log and lets a node find and
// fetch the purges it missed.
//
// Management numbers every purge (Log.Append assigns the next sequence
// number and persists it before the purge is fanned out); every edge and hub
// records each purge it applied (Log.Put) in a log of its own, in its data
// directory, so a restart remembers. Both are the same append-only file of
// checksummed records: a record torn by a crash is detected on open and
// dropped, never half-read.
//
// A node that was down or partitioned compares a Merkle summary of its log
// with its peer's (its parent hub's, or management's) and fetches only the
// ranges that differ (anti-entropy). The summary is a tree over fixed buckets
// of sequence numbers: a leaf hashes the records of 64 consecutive numbers, a
// node hashes its 16 children, and an empty range hashes to zero, so two logs
// of any length have comparable trees. Client.Fetch walks down from the
// peer's top level only where hashes differ, then asks for the records of the
// differing leaves.
//
// Replica is the node side: it serves POST /purge (record the sequence
// number, apply it to the cache; on a gap, catch up first) and the log
// endpoints, and keeps the node not ready until it has caught up at start.
// Handler serves the log endpoints of any Log (management mounts it for the
// authoritative log). Every endpoint requires the cluster token.
package purgelog
