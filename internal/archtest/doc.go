// Package archtest holds the tests that keep shoal's architecture honest:
// imports point down (runtime and netfab never see the cluster, api only the
// standard library) and every package says in a doc comment what it owns.
package archtest
