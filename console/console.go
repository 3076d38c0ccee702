package console

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

//go:embed web
var webFiles embed.FS

// Config configures a console.
type Config struct {
	// Brokers are seed addresses of the Kafka listener the console talks
	// to: for `ferry serve`, its own listener. Required.
	Brokers []string
	// ClientOpts are extra options for the Kafka client (tests add hooks
	// with them).
	ClientOpts []kgo.Opt
	// SampleInterval is how often the throughput sampler lists every
	// partition's end offset and size while the console is in use.
	// Default 5s; negative turns the sampler (and the charts) off.
	SampleInterval time.Duration
	// SampleIdle is how long after the last API request the sampler
	// keeps sampling. Default the longer of a minute and ten intervals.
	SampleIdle time.Duration
	// History is how many throughput samples are kept. Default 360 (30
	// minutes at 5s).
	History int
	// RequestTimeout bounds the Kafka requests of one API call. Default
	// 15s.
	RequestTimeout time.Duration
	// Logger receives the console's log lines. nil discards them.
	Logger *slog.Logger
}

func (c *Config) withDefaults() error {
	if len(c.Brokers) == 0 {
		return errors.New("console: Brokers is required")
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = 5 * time.Second
	}
	if c.SampleIdle <= 0 {
		c.SampleIdle = max(time.Minute, 10*c.SampleInterval)
	}
	if c.History <= 0 {
		c.History = 360
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Console is the web console: an http.Handler for the UI and its API.
type Console struct {
	cfg     Config
	logger  *slog.Logger
	cl      *kgo.Client
	adm     *kadm.Client
	handler http.Handler
	sampler *sampler

	// lastUse is when an API request last came in (unix nanoseconds); the
	// sampler rests while it is old.
	lastUse atomic.Int64

	// ctx is cancelled by Close; the sampler goroutine watches it and is
	// counted in wg.
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a console talking to cfg.Brokers and starts its throughput
// sampler. It does not dial until the first request.
func New(cfg Config) (*Console, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("ferry-console"),
		kgo.RetryTimeout(cfg.RequestTimeout),
	}, cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Console{
		cfg:    cfg,
		logger: cfg.Logger,
		cl:     cl,
		adm:    kadm.NewClient(cl),
		ctx:    ctx,
		cancel: cancel,
	}
	c.adm.SetTimeoutMillis(int32(cfg.RequestTimeout / time.Millisecond))
	c.sampler = newSampler(c, cfg.SampleInterval, cfg.SampleIdle, cfg.History)
	c.handler = http.NewCrossOriginProtection().Handler(c.routes())
	if cfg.SampleInterval > 0 {
		c.wg.Add(1)
		go c.sampler.run()
	}
	return c, nil
}

// Close stops the sampler, waits for it and closes the Kafka client. It is
// idempotent. Requests still being served fail once it returns.
func (c *Console) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		c.cl.Close()
	})
}

// ServeHTTP serves the UI and the API.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.handler.ServeHTTP(w, r)
}

func (c *Console) routes() *http.ServeMux {
	mux := http.NewServeMux()
	api := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c.touch()
			ctx, cancel := context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
			defer cancel()
			if err := h(w, r.WithContext(ctx)); err != nil {
				c.writeError(w, r, err)
			}
		})
	}
	api("GET /api/cluster", c.getCluster)
	api("GET /api/throughput", c.getThroughput)
	api("GET /api/topics", c.listTopics)
	api("POST /api/topics", c.createTopic)
	api("GET /api/topics/{topic}", c.getTopic)
	api("DELETE /api/topics/{topic}", c.deleteTopic)
	api("GET /api/topics/{topic}/partitions", c.listPartitions)
	api("GET /api/topics/{topic}/records", c.getRecords)
	api("GET /api/groups", c.listGroups)
	api("GET /api/groups/{group}", c.getGroup)
	api("DELETE /api/groups/{group}", c.deleteGroup)
	api("POST /api/groups/{group}/reset-offsets", c.resetOffsets)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such API: " + r.Method + " " + r.URL.Path})
	})

	static, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	files := http.FileServerFS(static)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// The UI is small and changes with the binary: always revalidate.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
		files.ServeHTTP(w, r)
	}))
	return mux
}

// touch records that the console is in use, waking the sampler if it
// rests.
func (c *Console) touch() {
	now := time.Now().UnixNano()
	if old := c.lastUse.Swap(now); time.Duration(now-old) > c.sampler.idleAfter {
		c.sampler.kick()
	}
}

// inUse reports whether an API request came in within the sampler's idle
// time.
func (c *Console) inUse(now time.Time) bool {
	return now.Sub(time.Unix(0, c.lastUse.Load())) <= c.sampler.idleAfter
}
