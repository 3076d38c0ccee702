// Command kfakeserve runs kfake (github.com/twmb/franz-go/pkg/kfake,
// franz-go's in-memory Kafka) as a broker process of its own, the peer
// `ferry bench compare` measures Ferry against. With -sync it keeps its
// data in -data-dir and fsyncs every produced batch before answering
// (kfake's SyncWrites): a broker with Ferry's durability, which makes it
// the fairest peer. It is a separate program so that kfake never becomes
// part of the ferry binary.
//
//	go run ./internal/benchpeers/kfakeserve -sync -data-dir /tmp/kfake -port 9093
//
// It prints "kfake ADDR pid PID" on stdout once it listens, and runs until
// SIGINT or SIGTERM. kfake keeps every record in memory as well, so start a
// fresh one for each comparison.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

type configFlag map[string]string

func (f configFlag) String() string { return "" }

func (f configFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	f[k] = v
	return nil
}

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: any free one)")
	dataDir := flag.String("data-dir", "", "keep the data in this directory (created if missing)")
	sync := flag.Bool("sync", false, "fsync every produced batch before answering (needs -data-dir)")
	configs := configFlag{}
	flag.Var(configs, "c", "broker config `key=value` (repeatable)")
	flag.Parse()
	if *sync && *dataDir == "" {
		fmt.Fprintln(os.Stderr, "kfakeserve: -sync needs -data-dir")
		os.Exit(2)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(*port), kfake.AllowAutoTopicCreation()}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	if *sync {
		opts = append(opts, kfake.SyncWrites())
	}
	if len(configs) > 0 {
		opts = append(opts, kfake.BrokerConfigs(configs))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kfakeserve: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("kfake %s pid %d\n", c.ListenAddrs()[0], os.Getpid())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	<-sigs
	c.Close()
}
