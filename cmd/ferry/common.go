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
	sec     *clientSecurity // TLS and SASL (clientsec.go)
}

// brokersFlag defines -brokers on fs, defaulting to $FERRY_BROKERS or
// localhost:9092.
func brokersFlag(fs *flag.FlagSet, p *string) {
	def := os.Getenv(envBrokers)
	if def == "" {
		def = defaultBrokers
	}
	fs.StringVar(p, "brokers", def, "comma-separated seed brokers (env "+envBrokers+")")
}

// splitBrokers splits a -brokers value at commas, dropping empty entries.
func splitBrokers(s string) []string {
	var out []string
	for b := range strings.SplitSeq(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// clientFlagSet returns the flag set of a command whose only flags are the
// client flags.
func clientFlagSet(name string) (*flag.FlagSet, *clientFlags) {
	fs := newFlagSet(name)
	return fs, addClientFlags(fs)
}

// addClientFlags defines -brokers, -o, -timeout and the TLS and SASL
// flags on fs.
func addClientFlags(fs *flag.FlagSet) *clientFlags {
	cf := &clientFlags{}
	brokersFlag(fs, &cf.brokers)
	fs.StringVar(&cf.output, "o", "table", "output format: table or json")
	fs.DurationVar(&cf.timeout, "timeout", 30*time.Second, "how long to wait for brokers on each request")
	cf.sec = addSecurityFlags(fs)
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

func (cf *clientFlags) brokerList() []string { return splitBrokers(cf.brokers) }

// parseClient parses the command line of a command that talks to brokers:
// its flags (see parseArgs), then the client flags (-o, -brokers,
// -timeout), then the number of positional arguments, which must match the
// command's args in the command table: none when it has none, exactly one
// for "TOPIC", one or more for "TOPIC...". It returns the positional
// arguments. Errors are usage errors, except flag.ErrHelp after -h.
func parseClient(fs *flag.FlagSet, cf *clientFlags, args []string, stdout io.Writer) ([]string, error) {
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if err := cf.check(); err != nil {
		return nil, err
	}
	name := fs.Name()
	var want string
	if c := lookupCommand(strings.Fields(name)); c != nil {
		want = c.args
	}
	noun, many := strings.CutSuffix(want, "...")
	noun = strings.ToLower(noun)
	switch {
	case want == "" && len(pos) > 0:
		return nil, usageError("%s takes no arguments", name)
	case many && len(pos) == 0:
		return nil, usageError("%s: name at least one %s", name, noun)
	case want != "" && !many && len(pos) != 1:
		return nil, usageError("%s: name one %s", name, noun)
	}
	return pos, nil
}

// startClient is the start of most broker commands: parseClient, then
// open. It returns the positional arguments, the connection and a context
// for its requests; the caller must call c.close.
func startClient(ctx context.Context, fs *flag.FlagSet, cf *clientFlags, args []string, stdout io.Writer) (pos []string, c *conn, rctx context.Context, err error) {
	if pos, err = parseClient(fs, cf, args, stdout); err != nil {
		return nil, nil, nil, err
	}
	if c, rctx, err = cf.open(ctx); err != nil {
		return nil, nil, nil, err
	}
	return pos, c, rctx, nil
}

// conn is a kgo client and its kadm view, plus the last failed dial so an
// error can say which broker could not be reached.
type conn struct {
	flags  *clientFlags
	cl     *kgo.Client
	adm    *kadm.Client
	cancel context.CancelFunc // ends the context open returned; nil after connect

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
	secOpts, err := cf.sec.opts()
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cf.brokerList()...),
		kgo.WithHooks(c),
		kgo.DialTimeout(min(cf.timeout, 10*time.Second)),
		kgo.RetryTimeout(cf.timeout),
		kgo.ClientID("ferry-cli"),
	}
	opts = append(opts, secOpts...)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cf.brokers, err)
	}
	c.cl = cl
	c.adm = kadm.NewClient(cl)
	c.adm.SetTimeoutMillis(int32(min(cf.timeout, time.Minute) / time.Millisecond))
	return c, nil
}

// open is connect plus a context for requests, derived from ctx and bounded
// by -timeout (see conn.ctx). c.close ends that context too.
func (cf *clientFlags) open(ctx context.Context, extra ...kgo.Opt) (c *conn, rctx context.Context, err error) {
	if c, err = cf.connect(extra...); err != nil {
		return nil, nil, err
	}
	rctx, c.cancel = c.ctx(ctx)
	return c, rctx, nil
}

// close ends the context from open, if any, and closes the client.
func (c *conn) close() {
	if c.cancel != nil {
		c.cancel()
	}
	c.cl.Close()
}

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

// writeRows prints rows as a JSON array with -o json, else as a table
// (see writeTable).
func writeRows[T any](w io.Writer, cf *clientFlags, rows []T, header []string, cells func(T) []any) error {
	if cf.json() {
		return writeJSON(w, rows)
	}
	return writeTable(w, header, rows, cells)
}

// writeTable prints header and then one line for each row, the cells that
// cells returns for it, in aligned columns.
func writeTable[T any](w io.Writer, header []string, rows []T, cells func(T) []any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		vals := cells(r)
		line := make([]string, len(vals))
		for i, v := range vals {
			line[i] = fmt.Sprint(v)
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	return tw.Flush()
}

func joinInt32(xs []int32) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}
