package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// runFunc is the shape of every subcommand: it parses args itself, writes
// results to stdout and diagnostics to stderr, and returns an error instead
// of exiting, so tests can run it in-process.
type runFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// command is one node of the command tree: a group (sub set) or a leaf (run
// set). flags builds the leaf's flag set, used for help and completion.
type command struct {
	name    string
	args    string // positional arguments for the usage line; parseClient checks their count against it
	summary string
	sub     []*command
	run     runFunc
	flags   func() *flag.FlagSet
	// defaultSub runs when a group is given flags but no subcommand
	// (`ferry bench -embedded` is `ferry bench produce -embedded`).
	defaultSub string
}

// commands is the command tree. It is built in init because completion
// walks it.
var commands []*command

func init() {
	commands = []*command{
		{name: "serve", summary: "run a Ferry broker", run: runServe},
		{name: "bench", summary: "measure a Kafka-protocol broker (produce, consume, e2e, compare, queue)", defaultSub: "produce", sub: []*command{
			{name: "produce", summary: "produce as fast as possible (or at -rate); ack latency", run: runBenchProduce, flags: benchFlagsFor("produce")},
			{name: "consume", summary: "read a topic back; time to first record", run: runBenchConsume, flags: benchFlagsFor("consume")},
			{name: "e2e", summary: "producer (fixed rate, or -rate 0 flat out; optional -bulk-size load beside it) and consumers together; end-to-end latency", run: runBenchE2E, flags: benchFlagsFor("e2e")},
			{name: "compare", summary: "the standard scenarios against several -target brokers, side by side", run: runBenchCompare, flags: compareFlagsOnly},
			{name: "queue", summary: "share groups: publish and acknowledged-consume rates, end-to-end latency, redelivery after a consumer dies", run: runBenchQueue, flags: queueFlagsOnly},
		}},
		{name: "topic", summary: "create, list, describe, delete and change topics", sub: []*command{
			{name: "create", args: "TOPIC...", summary: "create topics", run: runTopicCreate, flags: flagsOnly(topicCreateFlags)},
			{name: "list", summary: "list topics", run: runTopicList, flags: flagsOnly(topicListFlags)},
			{name: "describe", args: "TOPIC...", summary: "partitions, leaders, offsets, sizes and non-default configs", run: runTopicDescribe, flags: flagsOnly(topicDescribeFlags)},
			{name: "delete", args: "TOPIC...", summary: "delete topics and their data", run: runTopicDelete, flags: flagsOnly(topicDeleteFlags)},
			{name: "alter-config", args: "TOPIC...", summary: "set (-set k=v) or reset (-delete k) topic configs", run: runTopicAlterConfig, flags: flagsOnly(topicAlterConfigFlags)},
			{name: "add-partitions", args: "TOPIC...", summary: "grow topics to -count partitions (or by -add)", run: runTopicAddPartitions, flags: flagsOnly(topicAddPartitionsFlags)},
		}},
		{name: "produce", args: "TOPIC", summary: "produce stdin, one record per line", run: runProduce, flags: flagsOnly(produceFlags)},
		{name: "consume", args: "TOPIC", summary: "print records", run: runConsume, flags: flagsOnly(consumeFlags)},
		{name: "group", summary: "list, describe, delete consumer and share groups, reset their offsets", sub: []*command{
			{name: "list", summary: "list groups", run: runGroupList, flags: flagsOnly(groupListFlags)},
			{name: "describe", args: "GROUP...", summary: "members, assignments, committed (share: start) offsets and lag", run: runGroupDescribe, flags: flagsOnly(groupDescribeFlags)},
			{name: "delete", args: "GROUP...", summary: "delete empty groups", run: runGroupDelete, flags: flagsOnly(groupDeleteFlags)},
			{name: "reset-offsets", args: "GROUP", summary: "move committed (share: start) offsets (dry run unless -execute)", run: runGroupResetOffsets, flags: flagsOnly(groupResetFlags)},
			{name: "alter-config", args: "GROUP...", summary: "set (-set k=v) or reset (-delete k) a share group's configs", run: runGroupAlterConfig, flags: flagsOnly(groupAlterConfigFlags)},
		}},
		{name: "txn", summary: "list and describe transactions", sub: []*command{
			{name: "list", summary: "transactional ids, their producer ids and states", run: runTxnList, flags: flagsOnly(txnListFlags)},
			{name: "describe", args: "TRANSACTIONAL-ID...", summary: "state, producer id and epoch, timeout, start, partitions", run: runTxnDescribe, flags: flagsOnly(txnDescribeFlags)},
		}},
		{name: "producers", summary: "the producers partitions remember", sub: []*command{
			{name: "describe", args: "TOPIC...", summary: "producer ids, epochs, last sequences, open transactions per partition", run: runProducersDescribe, flags: flagsOnly(producersDescribeFlags)},
		}},
		{name: "cluster", summary: "cluster information", sub: []*command{
			{name: "info", summary: "brokers, controller, cluster id, API versions", run: runClusterInfo, flags: flagsOnly(clusterInfoFlags)},
			{name: "quorum", summary: "the metadata quorum: leader, epoch, high watermark, voters and observers and how far their logs go", run: runClusterQuorum, flags: flagsOnly(clusterQuorumFlags)},
			{name: "unregister", args: "BROKER-ID", summary: "remove a stopped broker from the metadata (and a broker-only node from the quorum's learners)", run: runClusterUnregister, flags: flagsOnly(clusterUnregisterFlags)},
			{name: "add-voter", args: "NODE-ID", summary: "make a controller that joined the metadata log a voter of the quorum, at its controller listener -controller HOST:PORT (AddRaftVoter)", run: runClusterAddVoter, flags: flagsOnly(clusterAddVoterFlags)},
			{name: "remove-voter", args: "NODE-ID", summary: "take a voter out of the metadata quorum, a dead controller's before its replacement is added (RemoveRaftVoter)", run: runClusterRemoveVoter, flags: flagsOnly(clusterRemoveVoterFlags)},
		}},
		{name: "user", summary: "create, list and delete SCRAM users", sub: []*command{
			{name: "create", args: "USER...", summary: "set users' SCRAM passwords (-password, or stdin)", run: runUserCreate, flags: flagsOnly(userCreateFlags)},
			{name: "list", summary: "users and their SCRAM mechanisms", run: runUserList, flags: flagsOnly(userListFlags)},
			{name: "delete", args: "USER...", summary: "delete users' SCRAM credentials", run: runUserDelete, flags: flagsOnly(userDeleteFlags)},
		}},
		{name: "acl", summary: "create, list and delete ACLs", sub: []*command{
			{name: "create", summary: "allow (or -deny) a principal an operation on a resource", run: runACLCreate, flags: flagsOnly(aclCreateFlags)},
			{name: "list", summary: "ACLs matching the flags (all without any)", run: runACLList, flags: flagsOnly(aclListFlags)},
			{name: "delete", summary: "delete the ACLs matching the flags", run: runACLDelete, flags: flagsOnly(aclDeleteFlags)},
		}},
		{name: "quota", summary: "set and list client quotas", sub: []*command{
			{name: "set", summary: "set (-set k=v) or remove (-delete k) quotas of a user and/or client id", run: runQuotaSet, flags: flagsOnly(quotaSetFlags)},
			{name: "list", summary: "every quota set", run: runQuotaList, flags: flagsOnly(quotaListFlags)},
		}},
		{name: "dev", summary: "development helpers", sub: []*command{
			{name: "cluster", summary: "run a cluster of -nodes local brokers (replicated partitions, failover)", run: runDevCluster, flags: flagsOnly(devClusterFlags)},
		}},
		{name: "health", summary: "is a broker up (/healthz) and serving (/readyz)? reads its admin listener", run: runHealth, flags: flagsOnly(healthFlags)},
		{name: "completion", args: "bash|zsh", summary: "print a shell completion script", run: runCompletion},
		{name: "help", args: "[COMMAND...]", summary: "show help", run: runHelp},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks errors caused by how the command was called; they exit 2.
var errUsage = errors.New("usage")

// usageError reports a bad command line.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// run runs the command line args and returns the exit code: 0 on success, 1
// on failure, 2 on a bad command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ferry: %s\n", strings.TrimPrefix(err.Error(), "usage: "))
		fmt.Fprintln(stderr, "run 'ferry help' for usage")
		return 2
	default:
		fmt.Fprintf(stderr, "ferry: %v\n", err)
		return 1
	}
}

// dispatch finds the command named by the leading args and runs it.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		writeUsage(stderr, nil, nil)
		return usageError("no command")
	}
	cmds, path := commands, []string{}
	for {
		if len(args) == 0 {
			writeUsage(stderr, path, cmds)
			return usageError("%s needs a subcommand", strings.Join(path, " "))
		}
		name := args[0]
		if name == "-h" || name == "-help" || name == "--help" {
			writeUsage(stdout, path, cmds)
			return nil
		}
		if parent := lookupCommand(path); parent != nil && parent.defaultSub != "" && strings.HasPrefix(name, "-") {
			name, args = parent.defaultSub, append([]string{parent.defaultSub}, args...)
		}
		c := find(cmds, name)
		if c == nil {
			return usageError("unknown command %q", strings.TrimSpace(strings.Join(append(path, name), " ")))
		}
		path, args = append(path, name), args[1:]
		if c.run != nil {
			return c.run(ctx, args, stdout, stderr)
		}
		cmds = c.sub
	}
}

func find(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

// writeUsage lists the commands under path.
func writeUsage(w io.Writer, path []string, cmds []*command) {
	if cmds == nil {
		cmds = commands
	}
	prefix := strings.Join(append([]string{"ferry"}, path...), " ")
	fmt.Fprintf(w, "Usage: %s COMMAND [flags] [args]\n\nCommands:\n", prefix)
	for _, c := range cmds {
		name := c.name
		if c.args != "" {
			name += " " + c.args
		}
		fmt.Fprintf(w, "  %-28s %s\n", name, c.summary)
	}
	if len(path) == 0 {
		fmt.Fprintf(w, "\nEvery client command takes -brokers (default $%s or %s), -o table|json,\n", envBrokers, defaultBrokers)
		fmt.Fprintf(w, "and -tls, -tls-ca, -tls-cert, -tls-key, -sasl-mechanism, -sasl-user, -sasl-password\n")
		fmt.Fprintf(w, "or -command-config FILE (Kafka client properties; default $%s).\n", envClientConfig)
		fmt.Fprintln(w, "Run 'ferry help COMMAND' or 'ferry COMMAND -h' for its flags.")
	}
}

// runHelp prints the command list or one command's flags.
func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands
	var path []string
	for _, name := range args {
		c := find(cmds, name)
		if c == nil {
			return usageError("unknown command %q", strings.Join(append(path, name), " "))
		}
		path = append(path, name)
		if c.run != nil {
			if c.flags == nil {
				fmt.Fprintf(stdout, "Usage: ferry %s %s\n\n%s\n", strings.Join(path, " "), c.args, c.summary)
				if c.name == "serve" {
					return c.run(ctx, []string{"-h"}, stdout, stdout)
				}
				return nil
			}
			fs := c.flags()
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, "Usage: ferry %s [flags] %s\n\n%s\n\nFlags:\n", strings.Join(path, " "), c.args, c.summary)
			fs.PrintDefaults()
			return nil
		}
		cmds = c.sub
	}
	writeUsage(stdout, path, cmds)
	return nil
}

// flagNames lists the flags of fs, sorted, for completion.
func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, "-"+f.Name) })
	sort.Strings(names)
	return names
}
