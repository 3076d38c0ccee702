// Package admin is a broker's admin HTTP listener (`ferry serve
// -admin-listen`): Prometheus metrics, health checks, and whatever the serve
// command mounts beside them (the web console). It is its own package
// because it is HTTP, not the Kafka protocol: it knows nothing of the
// broker but a readiness function and a metrics registry, so `server` stays
// the wire protocol only.
//
// Endpoints:
//
//	GET /metrics   Prometheus text (or OpenMetrics) exposition of Registry
//	GET /healthz   200 "ok": the process is up and answering
//	GET /readyz    200 "ready" when Ready returns nil, else 503 and its error:
//	               the broker's storage is open and it accepts connections
//	/              Config.Handler (the web console), else a list of the above
//
// The registry is the seam for metrics: NewRegistry holds the Go runtime,
// process and build collectors; the broker's own collector
// (server.Server.Collector: per-partition bytes and offsets, per-API
// latency and errors, fsync, group commit, lag) joins it with
// Registry.MustRegister, and nothing here changes.
//
// Concurrency: a Server is started once with Serve, which runs until
// Shutdown; Shutdown may be called from any goroutine and waits for the
// requests in flight, as net/http's does. Handlers are safe for concurrent
// use.
//
//	reg := admin.NewRegistry()
//	reg.MustRegister(srv.Collector())
//	adm := admin.New(admin.Config{Registry: reg, Ready: srv.Ready, Handler: consoleHandler})
//	go adm.Serve(ln)
//	...
//	adm.Shutdown(ctx)
package admin
