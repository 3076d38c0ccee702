package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// envBrokers names the environment variable giving the default
	// -brokers.
	envBrokers     = "FERRY_BROKERS"
	defaultBrokers = "localhost:9092"
)

// newFlagSet returns a flag set that reports errors to the caller instead
// of printing or exiting. name is the command path ("topic create").
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// flagsOnly adapts a constructor returning (flag set, options) for the
// command table.
func flagsOnly[T any](f func() (*flag.FlagSet, T)) func() *flag.FlagSet {
	return func() *flag.FlagSet { fs, _ := f(); return fs }
}

// parseArgs parses flags that may come before, between or after the
// positional arguments (`ferry topic create t1 -partitions 3 t2`), and
// returns the positional ones. Everything after "--" is positional. -h
// prints the command's flags to stdout and returns flag.ErrHelp.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				fmt.Fprintf(stdout, "Usage: ferry %s [flags]", fs.Name())
				if c := lookupCommand(strings.Fields(fs.Name())); c != nil && c.args != "" {
					fmt.Fprintf(stdout, " %s", c.args)
				}
				fmt.Fprintln(stdout, "\n\nFlags:")
				fs.PrintDefaults()
				return nil, err
			}
			return nil, usageError("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func lookupCommand(path []string) *command {
	cmds := commands
	var c *command
	for _, name := range path {
		if c = find(cmds, name); c == nil {
			return nil
		}
		cmds = c.sub
	}
	return c
}

// kvFlag is a repeatable k=v flag, kept in order.
type kvFlag struct{ pairs [][2]string }

func (f *kvFlag) String() string {
	var parts []string
	for _, p := range f.pairs {
		parts = append(parts, p[0]+"="+p[1])
	}
	return strings.Join(parts, ",")
}

func (f *kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	f.pairs = append(f.pairs, [2]string{k, v})
	return nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (f *listFlag) String() string     { return strings.Join(*f, ",") }
func (f *listFlag) Set(s string) error { *f = append(*f, s); return nil }

// clientFlags are the flags of every command that talks to brokers.
type clientFlags struct {
	brokers string
	output  string
	timeout time.Duration
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	cf := &clientFlags{}
	def := os.Getenv(envBrokers)
	if def == "" {
		def = defaultBrokers
	}
	fs.StringVar(&cf.brokers, "brokers", def, "comma-separated seed brokers (env "+envBrokers+")")
	fs.StringVar(&cf.output, "o", "table", "output format: table or json")
	fs.DurationVar(&cf.timeout, "timeout", 30*time.Second, "how long to wait for brokers on each request")
	return cf
}

func (cf *clientFlags) check() error {
	if cf.output != "table" && cf.output != "json" {
		return usageError("-o %q: want table or json", cf.output)
	}
	if len(cf.brokerList()) == 0 {
		return usageError("-brokers is empty")
	}
	if cf.timeout <= 0 {
		return usageError("-timeout must be positive")
	}
	return nil
}

func (cf *clientFlags) json() bool { return cf.output == "json" }

func (cf *clientFlags) brokerList() []string {
	var out []string
	for b := range strings.SplitSeq(cf.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// conn is a kgo client and its kadm view, plus the last failed dial so an
// error can say which broker could not be reached.
type conn struct {
	flags *clientFlags
	cl    *kgo.Client
	adm   *kadm.Client

	mu      sync.Mutex
	dialErr error
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (c *conn) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	c.dialErr = fmt.Errorf("cannot reach broker %s: %w", net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port)), err)
	c.mu.Unlock()
}

// connect opens a client to the -brokers. It does not dial until the first
// request.
func (cf *clientFlags) connect(extra ...kgo.Opt) (*conn, error) {
	c := &conn{flags: cf}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cf.brokerList()...),
		kgo.WithHooks(c),
		kgo.DialTimeout(min(cf.timeout, 10*time.Second)),
		kgo.RetryTimeout(cf.timeout),
		kgo.ClientID("ferry-cli"),
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cf.brokers, err)
	}
	c.cl = cl
	c.adm = kadm.NewClient(cl)
	c.adm.SetTimeoutMillis(int32(min(cf.timeout, time.Minute) / time.Millisecond))
	return c, nil
}

func (c *conn) close() { c.cl.Close() }

// ctx bounds one request (or a short sequence of them) by -timeout.
func (c *conn) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.flags.timeout)
}

// fail wraps err from doing what ("describe topic \"t\"") with the brokers
// asked or, when no broker could be reached, the dial error.
func (c *conn) fail(what string, err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	dialErr := c.dialErr
	c.mu.Unlock()
	var netErr net.Error
	if dialErr != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) || errors.Is(err, kgo.ErrClientClosed)) {
		return fmt.Errorf("%s: %w", what, dialErr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s on %s: no answer within %s: %w", what, c.flags.brokers, c.flags.timeout, err)
	}
	return fmt.Errorf("%s on %s: %w", what, c.flags.brokers, err)
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// table prints aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(toAny(header)...)
	}
	return t
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func (t *table) row(vals ...any) {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprint(v)
	}
	fmt.Fprintln(t.tw, strings.Join(parts, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

func joinInt32(xs []int32) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}
