// Package e2e holds shoal's end-to-end tests: the built binary as real
// processes, with real namespaces, cgroups and Raft, driven through the CLI
// as a user would. It has no code of its own outside tests.
package e2e
