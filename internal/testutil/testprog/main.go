// Command testprog is the workload of shoal's container tests: one small
// static binary (standard library only) that can show what it was started
// with, produce output, exit with a chosen code, run for a while, or serve
// HTTP. testutil.TestProgImage packs it as /app in an image.
//
// Flags, acted on in this order:
//
//	-args            print each argument (os.Args[1:]) on its own line as "arg: X"
//	-env             print the environment, one "env: KEY=VALUE" per line
//	-cat FILE        print FILE's content (check mounts, /etc/hosts, secrets)
//	-stdout TEXT     write TEXT and a newline to stdout
//	-stderr TEXT     write TEXT and a newline to stderr
//	-yes             print "y" lines until killed, as yes(1) (endless output)
//	-http ADDR       serve HTTP on ADDR (e.g. ":8080"): GET / replies "hello"
//	                 (or -reply TEXT), /healthz replies 200 "ok"; keeps running
//	-sleep DURATION  wait this long (e.g. "1h", "500ms") before exiting
//	-ignore-term     ignore SIGTERM and SIGINT (to test kill escalation)
//	-race-exe D      for D, play a hostile PID 1 (race.go): write /race.sh
//	                 ("#!/proc/self/exe"), catch /proc/PID/exe and /proc/PID/fd
//	                 of every process not run from the container's own root,
//	                 and try to write to each executable caught; then print
//	                 "race: handles=N writable=N hostfds=N"
//	-exit N          exit with code N (default 0)
//
// With -http and no -sleep it serves until it is signalled. On SIGTERM or
// SIGINT (unless -ignore-term) it prints "signal: NAME" and exits with the
// -exit code.
//
// Examples:
//
//	/app -stdout hello -exit 3
//	/app -http :8080
//	/app -args -env -sleep 1h
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		printArgs  = flag.Bool("args", false, "print each argument on its own line")
		printEnv   = flag.Bool("env", false, "print the environment")
		cat        = flag.String("cat", "", "print this file's content")
		stdout     = flag.String("stdout", "", "write this line to stdout")
		stderr     = flag.String("stderr", "", "write this line to stderr")
		httpAddr   = flag.String("http", "", "serve HTTP on this address")
		reply      = flag.String("reply", "hello", "body of GET /")
		sleep      = flag.Duration("sleep", 0, "wait this long before exiting")
		ignoreTerm = flag.Bool("ignore-term", false, "ignore SIGTERM and SIGINT")
		exitCode   = flag.Int("exit", 0, "exit code")
		race       = flag.Duration("race-exe", 0, "race for the executables of other processes this long")
		yes        = flag.Bool("yes", false, "print y lines until killed, as yes(1)")
	)
	flag.Parse()

	if *race > 0 {
		raceExe(*race)
	}

	if *printArgs {
		for _, a := range os.Args[1:] {
			fmt.Printf("arg: %s\n", a)
		}
	}
	if *printEnv {
		for _, e := range os.Environ() {
			fmt.Printf("env: %s\n", e)
		}
	}
	if *cat != "" {
		b, err := os.ReadFile(*cat)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cat: %v\n", err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
	}
	if *stdout != "" {
		fmt.Println(*stdout)
	}
	if *yes {
		lines := []byte(strings.Repeat("y\n", 4096))
		for {
			if _, err := os.Stdout.Write(lines); err != nil {
				os.Exit(1)
			}
		}
	}
	if *stderr != "" {
		fmt.Fprintln(os.Stderr, *stderr)
	}

	sigs := make(chan os.Signal, 1)
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	}

	if *httpAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, *reply) })
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
		srv := &http.Server{Addr: *httpAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil {
				fmt.Fprintf(os.Stderr, "http: %v\n", err)
				os.Exit(1)
			}
		}()
		fmt.Printf("listening on %s\n", *httpAddr)
	}

	var wait <-chan time.Time
	switch {
	case *sleep > 0:
		wait = time.After(*sleep)
	case *httpAddr != "":
		// nil channel: serve until signalled
	default:
		os.Exit(*exitCode)
	}
	select {
	case <-wait:
	case s := <-sigs:
		fmt.Printf("signal: %v\n", s)
	}
	os.Exit(*exitCode)
}
