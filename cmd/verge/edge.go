package main

import (
	"context"
	"fmt"
)

// Placeholder until the edge engine lands (being written now).
func runEdge(_ context.Context, e env) int {
	fmt.Fprintln(e.stderr, "edge: not yet")
	return exitFailure
}
func runHub(_ context.Context, e env) int { fmt.Fprintln(e.stderr, "hub: not yet"); return exitFailure }
