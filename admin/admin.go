package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("admin: closed")

// Config configures the admin listener.
type Config struct {
	// Ready reports whether the broker serves clients (nil) or why not;
	// /readyz answers with it. nil: always ready once serving.
	Ready func() error
	// Registry holds the metrics /metrics exposes. nil: NewRegistry().
	Registry *prometheus.Registry
	// Handler serves every path the listener does not (the web console).
	// nil: "/" lists the endpoints and other paths are 404.
	Handler http.Handler
	// Logger receives errors of the metrics handler and of Serve. nil
	// discards them.
	Logger *slog.Logger
}

// NewRegistry returns a registry holding the Go runtime collector (go_*),
// the process collector (process_*: CPU, memory, open files) and the Go
// build information (go_build_info). The broker's collectors join it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	return reg
}

// Server is the admin HTTP listener.
type Server struct {
	cfg Config
	hs  *http.Server
}

// New returns an admin listener; Serve starts it.
func New(cfg Config) *Server {
	if cfg.Registry == nil {
		cfg.Registry = NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg}
	s.hs = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler returns the listener's routes, for tests and for mounting
// elsewhere.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(s.cfg.Registry,
		promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{
			ErrorLog:          slogPrinter{s.cfg.Logger},
			EnableOpenMetrics: true,
		})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	if s.cfg.Handler != nil {
		mux.Handle("/", s.cfg.Handler)
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "ferry admin: /metrics /healthz /readyz")
		})
	}
	return mux
}

// Serve answers requests on ln until Shutdown, then returns
// ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	err := s.hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return fmt.Errorf("admin: %w", err)
}

// Shutdown stops accepting, waits for requests in flight until ctx is done
// and then closes every connection. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.hs.Shutdown(ctx)
	if err != nil {
		s.hs.Close()
	}
	return err
}

// slogPrinter adapts a slog.Logger to promhttp's Logger.
type slogPrinter struct{ logger *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.logger.Error("metrics: " + fmt.Sprint(v...)) }
