// Command hello is the demo workload: a tiny static HTTP server that greets
// whoever asks and reports its health on /healthz.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	addr := ":" + env("PORT", "8080")
	greeting := env("GREETING", "hello")
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from %s (pid %d)\n", greeting, host, os.Getpid())
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	log.Printf("hello: listening on %s as pid %d in %s", addr, os.Getpid(), host)
	log.Fatal(http.ListenAndServe(addr, nil))
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
