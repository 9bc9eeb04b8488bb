// Command homemesh is the smart-home hub, its split-mode services, the
// simulated devices and the load generators. See `homemesh --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/homemesh/homemesh/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
