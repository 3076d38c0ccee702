package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const (
	// envAdmin names the environment variable giving the default -admin.
	envAdmin = "FERRY_ADMIN"
	// defaultAdmin is where `make run` puts the admin listener (Redpanda's
	// admin port).
	defaultAdmin = "localhost:9644"
)

type healthOptions struct {
	admin   string
	output  string
	timeout time.Duration
	live    bool
}

func healthFlags() (*flag.FlagSet, *healthOptions) {
	fs := newFlagSet("health")
	o := &healthOptions{}
	def := os.Getenv(envAdmin)
	if def == "" {
		def = defaultAdmin
	}
	fs.StringVar(&o.admin, "admin", def, "admin listener of the broker, HOST:PORT or a URL (env "+envAdmin+")")
	fs.StringVar(&o.output, "o", "table", "output format: table or json")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long to wait for each answer")
	fs.BoolVar(&o.live, "live", false, "check only that the process is up (/healthz), not that it serves clients (/readyz)")
	return fs, o
}

// healthCheck is the answer to one endpoint.
type healthCheck struct {
	Check  string `json:"check"`  // live or ready
	URL    string `json:"url"`    // what was asked
	OK     bool   `json:"ok"`     // 200
	Status int    `json:"status"` // HTTP status; 0 when unreachable
	Detail string `json:"detail"` // the body, or why it could not be read
}

// runHealth asks a broker's admin listener whether it is up (/healthz) and
// serving (/readyz). It exits 0 when every check passes and 1 otherwise,
// so it fits a container's health check or a script waiting for a start.
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := healthFlags()
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError("health takes no arguments")
	case o.output != "table" && o.output != "json":
		return usageError("-o %q: want table or json", o.output)
	case o.timeout <= 0:
		return usageError("-timeout must be positive")
	case strings.TrimSpace(o.admin) == "":
		return usageError("-admin is empty")
	}
	base := strings.TrimRight(o.admin, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	checks := []healthCheck{{Check: "live", URL: base + "/healthz"}}
	if !o.live {
		checks = append(checks, healthCheck{Check: "ready", URL: base + "/readyz"})
	}
	hc := &http.Client{Timeout: o.timeout}
	var failed []string
	for i := range checks {
		c := &checks[i]
		c.Status, c.Detail, err = httpGet(ctx, hc, c.URL)
		if err != nil {
			c.Detail = err.Error()
		}
		c.OK = c.Status == http.StatusOK
		if !c.OK {
			failed = append(failed, c.Check)
		}
	}
	cf := &clientFlags{output: o.output}
	err = writeRows(stdout, cf, checks, []string{"CHECK", "STATUS", "DETAIL"}, func(c healthCheck) []any {
		status := "ok"
		if !c.OK {
			status = "failed"
		}
		return []any{c.Check, status, c.Detail}
	})
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("health: %s failed at %s", strings.Join(failed, " and "), base)
	}
	return nil
}

// httpGet returns the status and the first line of the body at addr.
func httpGet(ctx context.Context, hc *http.Client, addr string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the `Get "url":` prefix; the row names the URL
		}
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return resp.StatusCode, line, err
}
