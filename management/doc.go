// Package management is Verge's control plane: every node reports to it,
// it keeps usage per property per minute in SQLite, shows the fleet on a
// dashboard and in Prometheus, fires alerts, and is where operators purge
// and preload.
//
// Node side: a Reporter snapshots a node's cumulative counters every few
// seconds and posts them (a Report) to management's intake with the
// cluster token. When management is down the snapshots wait in a bounded
// backlog and are delivered later.
//
// Management side: for each node instance (a process: Report.Instance) the
// intake keeps the last counters it accepted (a cursor) and adds the
// difference to usage, attributed to the minute the snapshot was taken.
// Cursors and usage are written in one transaction, and a report whose
// sequence number the cursor has passed is ignored, so retries, late
// deliveries and restarts of either side leave the totals equal to the sum
// of the nodes' own counters, exactly.
//
// The operator API (bearer operator token) lives under /api/v1 on
// management's own listener; see README.md for every endpoint.
package management
