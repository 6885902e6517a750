// Command authctl manages the users of an authn database: create the first
// user, reset a password, lock and unlock accounts, see who is locked,
// import users from an htpasswd file or from another database such as the
// Python application's auth.db, and back up and restore a SQLite database
// while servers use it. It is built on the public authn API, and on SQLite
// itself for backup and restore.
//
//	go run ./examples/authctl -db auth.db <command> [arguments]
//
// Run it with -h for the commands, and "authctl help COMMAND" for one.
// Exit status: 0 on success, 1 on an operational error, 2 on a usage error.
// Only results go to standard output; messages and prompts go to standard
// error, so it composes in scripts.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}
