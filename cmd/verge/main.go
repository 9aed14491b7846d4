// Command verge is the one Verge binary: every node role and the operator
// commands are its subcommands. Run "verge help" for the list.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
