package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type devClusterOptions struct {
	nodes        int
	brokers      int
	controllers  bool
	dataDir      string
	host         string
	kafkaPort    int
	ctrlPort     int
	adminPort    int
	restartAfter time.Duration
	props        kvFlags
}

func devClusterFlags() (*flag.FlagSet, *devClusterOptions) {
	o := &devClusterOptions{props: kvFlags{}}
	fs := flag.NewFlagSet("dev cluster", flag.ContinueOnError)
	fs.IntVar(&o.nodes, "nodes", 3, "number of nodes of the metadata quorum (the voters), brokers too unless -controller-only")
	fs.IntVar(&o.brokers, "brokers", 0, "number of broker-only nodes (process.roles=broker) besides -nodes; they take the ids after the voters'")
	fs.BoolVar(&o.controllers, "controller-only", false, "the -nodes voters are controllers only (process.roles=controller), never brokers; needs -brokers")
	fs.StringVar(&o.dataDir, "data-dir", "./data-cluster", "parent of the nodes' data directories (node-0, node-1, ...)")
	fs.StringVar(&o.host, "host", "127.0.0.1", "address every node listens on")
	fs.IntVar(&o.kafkaPort, "port", 9092, "Kafka port of node 0; node i listens on port+i")
	fs.IntVar(&o.ctrlPort, "controller-port", 19092, "controller (raft) port of node 0; node i on controller-port+i")
	fs.IntVar(&o.adminPort, "admin-port", 9644, "admin HTTP port of node 0 (console, metrics, health); node i on admin-port+i; 0 for none")
	fs.DurationVar(&o.restartAfter, "restart-after", 0, "restart a node this long after it dies (0: leave it down)")
	fs.Var(o.props, "c", "broker config given to every node, key=value (repeatable)")
	return fs, o
}

// runDevCluster starts -nodes `ferry serve` processes on one machine (and
// -brokers broker-only ones), each with its own data directory and ports,
// forming one cluster, and stops them on SIGINT or SIGTERM. Each node's log lines go to stderr prefixed
// with its id.
func runDevCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := devClusterFlags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("dev cluster: %v", err)
	}
	if o.nodes < 1 || o.nodes > 100 {
		return usageError("dev cluster: -nodes %d: want 1 to 100", o.nodes)
	}
	if o.brokers < 0 || o.brokers > 100 {
		return usageError("dev cluster: -brokers %d: want 0 to 100", o.brokers)
	}
	if o.controllers && o.brokers == 0 {
		return usageError("dev cluster: -controller-only needs -brokers: a cluster of controllers only has no broker")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	total := o.nodes + o.brokers
	var voters, seeds []string
	for i := range total {
		if i < o.nodes {
			voters = append(voters, fmt.Sprintf("%d@%s:%d", i, o.host, o.ctrlPort+i))
		}
		seeds = append(seeds, fmt.Sprintf("%s:%d", o.host, o.kafkaPort+i))
	}
	// Clients bootstrap from the brokers.
	brokerSeeds := seeds
	if o.controllers {
		brokerSeeds = seeds[o.nodes:]
	}
	roles := func(i int) string {
		switch {
		case i >= o.nodes:
			return "broker"
		case o.controllers:
			return "controller"
		}
		return "broker,controller"
	}
	argsFor := func(i int) []string {
		a := []string{"serve",
			"-node-id", strconv.Itoa(i),
			"-listen", seeds[i],
			"-data-dir", filepath.Join(o.dataDir, fmt.Sprintf("node-%d", i)),
			"-c", "controller.quorum.voters=" + strings.Join(voters, ","),
			"-c", "process.roles=" + roles(i),
			"-c", "group.initial.rebalance.delay.ms=0",
		}
		if o.adminPort > 0 {
			a = append(a, "-admin-listen", fmt.Sprintf("%s:%d", o.host, o.adminPort+i))
		}
		for k, v := range o.props {
			a = append(a, "-c", k+"="+v)
		}
		return a
	}
	var mu sync.Mutex // serializes lines written to stdout and stderr
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, format+"\n", args...)
	}
	var wg sync.WaitGroup
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cmd := exec.Command(exe, argsFor(i)...)
				if os.Getenv("FERRY_RUN_MAIN") != "" {
					// Run by a test binary (see TestMain): its nodes too.
					cmd = exec.Command(exe, "-test.run=^$")
					cmd.Env = append(os.Environ(), "FERRY_RUN_MAIN="+strings.Join(argsFor(i), " "))
				}
				out, _ := cmd.StdoutPipe()
				cmd.Stderr = cmd.Stdout
				if err := cmd.Start(); err != nil {
					say("node %d: %v", i, err)
					return
				}
				say("node %d: pid %d, %s, Kafka on %s, data in %s", i, cmd.Process.Pid, roles(i), seeds[i], filepath.Join(o.dataDir, fmt.Sprintf("node-%d", i)))
				copied := make(chan struct{})
				go func() {
					defer close(copied)
					sc := bufio.NewScanner(out)
					sc.Buffer(make([]byte, 64<<10), 1<<20)
					for sc.Scan() {
						mu.Lock()
						fmt.Fprintf(stderr, "[node %d] %s\n", i, sc.Text())
						mu.Unlock()
					}
				}()
				exited := make(chan error, 1)
				go func() { <-copied; exited <- cmd.Wait() }()
				select {
				case err := <-exited:
					say("node %d exited: %v", i, err)
					if o.restartAfter <= 0 {
						return
					}
					select {
					case <-ctx.Done():
						return
					case <-time.After(o.restartAfter):
						say("node %d: restarting", i)
						continue
					}
				case <-ctx.Done():
					cmd.Process.Signal(syscall.SIGTERM)
					<-exited
					return
				}
			}
		}()
	}
	say("cluster of %d nodes: bootstrap servers %s", total, strings.Join(brokerSeeds, ","))
	say("try: FERRY_BROKERS=%s ferry cluster info", strings.Join(brokerSeeds, ","))
	wg.Wait()
	return nil
}
