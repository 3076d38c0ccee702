package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferrymq/ferry/admin"
	"github.com/ferrymq/ferry/console"
	"github.com/ferrymq/ferry/internal/limits"
	"github.com/ferrymq/ferry/server"
)

// kvFlags collects repeatable -c key=value broker configs.
type kvFlags map[string]string

func (kv kvFlags) String() string { return "" }

func (kv kvFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	return nil
}

type serveOptions struct {
	listen, dataDir, advertised string
	controllerListen            string
	nodeID                      int
	logFormat, logLevel         string
	props                       kvFlags
	configFile                  string
	shutdownTimeout             time.Duration
	pprofAddr                   string
	adminListen                 string
	console                     bool
}

func serveFlags() (*flag.FlagSet, *serveOptions) {
	o := &serveOptions{props: kvFlags{}}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9092", "address of the PLAINTEXT listener (the listeners config, -c listeners=..., names several)")
	fs.StringVar(&o.dataDir, "data-dir", "./data", "data directory")
	fs.StringVar(&o.advertised, "advertised-addr", "", "host:port given to clients (default: the listen address)")
	fs.IntVar(&o.nodeID, "node-id", 0, "node id (node.id)")
	fs.StringVar(&o.controllerListen, "controller-listen", "", "with -c controller.quorum.voters: address of the controller listener (default: this node's address in the voters)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Var(o.props, "c", "broker config by its Kafka name, key=value (repeatable), e.g. -c num.partitions=3")
	fs.StringVar(&o.configFile, "config", "", "Java properties file of broker configs (-c flags win)")
	fs.StringVar(&o.pprofAddr, "pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	fs.StringVar(&o.adminListen, "admin-listen", "", "serve the admin HTTP listener (web console, /metrics, /healthz, /readyz) on this address, e.g. localhost:9644 (default: off)")
	fs.BoolVar(&o.console, "console", true, "serve the web console on the admin listener")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long to let requests in flight finish on SIGTERM")
	return fs, o
}

// runServe runs a broker until ctx is cancelled (SIGINT/SIGTERM in main):
// it stops accepting, lets requests in flight finish, closes every log
// cleanly and returns nil. A second signal during shutdown exits at once.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := serveFlags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("serve: %v", err)
	}
	if fs.NArg() > 0 {
		return usageError("serve takes no arguments, got %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError("serve: -log-level %q: want debug, info, warn or error", o.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler
	switch o.logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, hopts)
	case "json":
		handler = slog.NewJSONHandler(stderr, hopts)
	default:
		return usageError("serve: -log-format %q: want text or json", o.logFormat)
	}
	logger := slog.New(handler)

	props := map[string]string{}
	if o.configFile != "" {
		b, err := os.ReadFile(o.configFile)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		props = server.ParseProperties(string(b))
	}
	for k, v := range o.props {
		props[k] = v
	}
	nodeID := o.nodeID
	if v, ok := props["node.id"]; ok && !flagSet(fs, "node-id") {
		n, err := strconv.Atoi(v)
		if err != nil {
			return usageError("serve: node.id %q is not a number", v)
		}
		nodeID = n
	}

	// Segments and connections share the open file limit; the segment file
	// cache sizes itself from it when the broker opens its logs.
	if n, err := limits.RaiseOpenFiles(); err != nil {
		logger.Warn("cannot raise the open file limit to its hard limit", "limit", n, "err", err)
	} else {
		logger.Debug("open file limit", "limit", n)
	}

	if props["listeners"] == "" {
		props["listeners"] = "PLAINTEXT://" + o.listen
	} else if flagSet(fs, "listen") {
		return usageError("serve: -listen and the listeners config together; name every listener in listeners")
	}
	listeners, err := server.ParseListeners(props)
	if err != nil {
		return usageError("serve: %v", err)
	}
	lns := make([]net.Listener, 0, len(listeners))
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	consoleAddr := ""
	for _, l := range listeners {
		ln, err := net.Listen("tcp", l.Addr())
		if err != nil {
			closeAll()
			return fmt.Errorf("serve: listener %s: listen on %s: %w", l.Name, l.Addr(), err)
		}
		lns = append(lns, ln)
		if consoleAddr == "" && l.Protocol == server.ProtocolPlaintext {
			consoleAddr = selfAddr(ln.Addr())
		}
	}
	srv, err := server.New(server.Config{
		DataDir:          o.dataDir,
		NodeID:           int32(nodeID),
		AdvertisedAddr:   o.advertised,
		ControllerListen: o.controllerListen,
		Logger:           logger,
		Props:            props,
	})
	if err != nil {
		closeAll()
		return err
	}
	for i, ln := range lns {
		fmt.Fprintf(stdout, "ferry listening on %s (%s, %s; data in %s)\n", ln.Addr(), listeners[i].Name, listeners[i].Protocol, o.dataDir)
	}
	served := make(chan error, len(lns))
	for i, ln := range lns {
		go func() { served <- srv.ServeListener(listeners[i].Name, ln) }()
	}
	waitServed := func(n int) {
		for range n {
			<-served
		}
	}
	// The admin listener's /readyz says ready once a listener accepts.
	for deadline := time.Now().Add(5 * time.Second); errors.Is(srv.Ready(), server.ErrNotServing) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if o.pprofAddr != "" {
		stop, err := servePprof(o.pprofAddr, logger)
		if err != nil {
			srv.Close()
			waitServed(len(lns))
			return fmt.Errorf("serve: -pprof: %w", err)
		}
		defer stop()
	}

	var adminDone chan error
	if o.adminListen != "" {
		if !o.console {
			consoleAddr = ""
		} else if consoleAddr == "" {
			logger.Warn("no PLAINTEXT listener: the web console is off (it is a client of one)")
		}
		stop, done, err := serveAdmin(o.adminListen, srv, consoleAddr, logger, stdout)
		if err != nil {
			srv.Close()
			waitServed(len(lns))
			return fmt.Errorf("serve: -admin-listen: %w", err)
		}
		defer stop()
		adminDone = done
	}

	// A second SIGINT/SIGTERM while shutting down exits at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	select {
	case err := <-served:
		srv.Close()
		waitServed(len(lns) - 1)
		return fmt.Errorf("serve: %w", err)
	case err := <-adminDone:
		srv.Close()
		waitServed(len(lns))
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing requests in flight, closing logs")
	stopSignals := make(chan struct{})
	defer close(stopSignals)
	go func() {
		seen := 0
		for {
			select {
			case <-sigs:
				if seen++; seen >= 2 {
					logger.Error("second signal: exiting without a clean shutdown")
					os.Exit(1)
				}
			case <-stopSignals:
				return
			}
		}
	}()
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	waitServed(len(lns))
	return nil
}

// serveAdmin starts the admin listener on addr (metrics, health checks
// and, unless consoleAddr is empty, the web console talking to the broker
// at consoleAddr), prints its address and returns a stop function that
// shuts it down and waits for it, and a channel that receives Serve's
// error if it stops on its own. The broker is shut down before stop is
// called, so /readyz says "not ready" while requests in flight drain.
func serveAdmin(addr string, srv *server.Server, consoleAddr string, logger *slog.Logger, stdout io.Writer) (stop func(), done chan error, err error) {
	var web *console.Console
	var handler http.Handler
	if consoleAddr != "" {
		web, err = console.New(console.Config{Brokers: []string{consoleAddr}, Logger: logger.With("component", "console")})
		if err != nil {
			return nil, nil, err
		}
		handler = web
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if web != nil {
			web.Close()
		}
		return nil, nil, err
	}
	reg := admin.NewRegistry()
	reg.MustRegister(srv.Collector())
	adm := admin.New(admin.Config{
		Registry: reg,
		Ready:    srv.Ready,
		Handler:  handler,
		Logger:   logger.With("component", "admin"),
	})
	done = make(chan error, 1)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := adm.Serve(ln); !errors.Is(err, admin.ErrServerClosed) {
			done <- err
		}
	}()
	fmt.Fprintf(stdout, "ferry admin listening on http://%s\n", ln.Addr())
	logger.Info("admin listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		adm.Shutdown(ctx)
		<-served
		if web != nil {
			web.Close()
		}
	}, done, nil
}

// selfAddr is the address to reach a listener bound to a from this host:
// a wildcard address (0.0.0.0, or ::, which Go listens on for IPv4 too)
// becomes 127.0.0.1.
func selfAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// servePprof serves the runtime profiles on addr until stop is called.
func servePprof(addr string, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	hs := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	logger.Info("pprof listening", "addr", ln.Addr().String())
	return func() { hs.Close(); <-done }, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
